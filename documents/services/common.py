"""What the documents services share: the scan states, storage keys, and queueing the scan tasks."""

import datetime as dt
import secrets
import uuid

from django.conf import settings

from integrations.task_base import enqueue_on_commit

from ..models import DocumentVersion
from ..providers import PREFIX

Scan = DocumentVersion.ScanStatus
# A document left in `deleting` this long had its purge task lost (broker down, worker died);
# so had an infected version still not moved to quarantine this long after its scan.
STUCK_PURGE_AFTER = dt.timedelta(minutes=15)


def _new_storage_key():
    # Random, and never derived from the file name or anything else the client sent.
    return f"{PREFIX}{secrets.token_hex(1)}/{uuid.uuid4().hex}"


def quarantine_key_for(storage_key):
    # Derived from the original key, so a retried move goes to the same place and
    # the sweep can tell an object caught mid-move from an orphan.
    return f"{settings.DOCUMENT_QUARANTINE_PREFIX}{storage_key}"


def _enqueue_scan(version_id):
    from ..tasks import version_scan

    enqueue_on_commit(version_scan, version_id)


def _enqueue_quarantine(version_id):
    from ..tasks import version_quarantine

    enqueue_on_commit(version_quarantine, version_id)
