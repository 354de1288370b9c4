"""Delete a document (its stored objects by a task with retries), and sweep what a lost task left."""

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone

from integrations.task_base import enqueue_on_commit

from ..models import Document, DocumentVersion
from ..providers import PREFIX, LocalBackend, S3Backend, backend_for
from .common import STUCK_PURGE_AFTER, Scan, _enqueue_quarantine, quarantine_key_for

logger = logging.getLogger(__name__)


def document_delete(*, document):
    """Gone for the client now; the stored objects are removed by a task with retries. False: already deleted."""
    from ..tasks import document_purge

    updated = Document.objects.filter(pk=document.pk, state=Document.State.ACTIVE).update(
        state=Document.State.DELETING, deleted_at=timezone.now()
    )
    if updated:
        enqueue_on_commit(document_purge, document.pk)
    return bool(updated)


def document_purge(*, document_id):
    """Delete every stored object of a deleted document, then its rows. Safe to repeat."""
    document = Document.objects.filter(pk=document_id, state=Document.State.DELETING).first()
    if document is None:
        return "skipped"
    for version in document.versions.all():
        backend = backend_for(version.backend)
        backend.delete(version.storage_key, owner=document.owner_id, related=version)
        if version.scan_status == Scan.INFECTED and version.quarantined_at is None:
            # A quarantine move may have copied the object without recording it yet.
            backend.delete(quarantine_key_for(version.storage_key), owner=document.owner_id, related=version)
        # Row by row: a retry after a failure starts from the objects still left.
        version.delete()
    document.delete()
    return "purged"


def orphans_sweep(*, now=None):
    """Re-enqueue lost purges and remove stored objects that no version row names."""
    from ..tasks import document_purge

    now = now or timezone.now()
    stuck = list(
        Document.objects.filter(state=Document.State.DELETING, deleted_at__lt=now - STUCK_PURGE_AFTER).values_list(
            "pk", flat=True
        )
    )
    for pk in stuck:
        enqueue_on_commit(document_purge, pk)
    unmoved = list(
        DocumentVersion.objects.filter(
            scan_status=Scan.INFECTED,
            quarantined_at__isnull=True,
            scanned_at__lt=now - STUCK_PURGE_AFTER,
            document__state=Document.State.ACTIVE,
        ).values_list("pk", flat=True)
    )
    for pk in unmoved:
        _enqueue_quarantine(pk)

    # Younger objects may belong to an upload whose row is not committed yet.
    cutoff = now - dt.timedelta(seconds=settings.DOCUMENT_ORPHAN_GRACE_SECONDS)
    backends = [LocalBackend()]
    if settings.S3_BUCKET:
        backends.append(S3Backend())
    removed = []
    for backend in backends:
        for prefix in (PREFIX, settings.DOCUMENT_QUARANTINE_PREFIX):
            batch = []
            for key, modified in backend.list_objects(prefix):
                if modified >= cutoff:
                    continue
                batch.append(key)
                if len(batch) >= 500:
                    removed += _remove_unknown(backend, batch)
                    batch = []
            removed += _remove_unknown(backend, batch)
    if removed:
        logger.info("documents: removed %d orphaned objects", len(removed))
    return {"requeued": stuck, "requarantined": unmoved, "removed": removed}


def _remove_unknown(backend, keys):
    if not keys:
        return []
    qprefix = settings.DOCUMENT_QUARANTINE_PREFIX
    # A quarantined object belongs to its row by its new key, or by its original
    # key while the move that copied it has not recorded it yet.
    originals = {key: key[len(qprefix) :] for key in keys if key.startswith(qprefix)}
    known = set(
        DocumentVersion.objects.filter(storage_key__in=[*keys, *originals.values()]).values_list(
            "storage_key", flat=True
        )
    )
    gone = [key for key in keys if key not in known and originals.get(key) not in known]
    for key in gone:
        backend.delete(key)
    return gone


def quarantine_leftovers_purge(*, dry_run=False):
    """Remove the infected bytes that quarantine moves and purges left on a versioned bucket before b1c5280; the keys.

    Those deletes only put a delete marker on the key, so the malware stayed as a noncurrent version: of a
    quarantined version's original key (until the lifecycle rule's NoncurrentVersionExpiration), and, for a
    purged quarantined document, of its key under the quarantine prefix, which no lifecycle rule covers. Only
    keys whose latest version is a delete marker go: a quarantined version's original (its row names the
    quarantined copy), and a quarantine key no row names. A deleted clean file under documents/ stays to the
    lifecycle rule: until then versioning is the operator's undo. Safe to repeat.
    """
    backend = S3Backend()
    qprefix = settings.DOCUMENT_QUARANTINE_PREFIX
    leftovers = []
    quarantined = DocumentVersion.objects.filter(
        backend=DocumentVersion.Backend.S3, quarantined_at__isnull=False, storage_key__startswith=qprefix
    ).values_list("storage_key", flat=True)
    for storage_key in quarantined.iterator(chunk_size=500):
        original = storage_key[len(qprefix) :]
        leftovers += [key for key in backend.deleted_keys(original) if key == original]
    deleted = list(backend.deleted_keys(qprefix))
    named = set(DocumentVersion.objects.filter(storage_key__in=deleted).values_list("storage_key", flat=True))
    leftovers += [key for key in deleted if key not in named]
    if not dry_run:
        for key in leftovers:
            backend.delete_versions(key)
    return leftovers
