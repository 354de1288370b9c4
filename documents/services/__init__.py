"""What the documents app does, by concern:

    versions.py   upload a document, add a version, restore an older one
    purge.py      delete (objects removed by a task), the orphan sweep, and quarantine leftovers on S3
    scanning.py   virus scans with clamd, quarantine of infected objects
    links.py      short-lived download links (S3 presigned or hub-signed)
    lifecycle.py  storage classes and the bucket's lifecycle rules
    quota.py      upload limits, stored bytes and their monthly cost
    common.py     scan states, storage keys, queueing the scan tasks

Views, tasks, admin actions and the management command all call these
(through the names below). Provider calls (S3 through the gateway, clamd)
never run inside transaction.atomic(): the object is stored first and its row
written after, so a failure in between leaves an orphan object, which the
sweep removes, never a row without its object.
"""

from .common import STUCK_PURGE_AFTER, Scan, quarantine_key_for
from .lifecycle import LifecycleError, bucket_lifecycle_configure, lifecycle_rules, version_refresh_storage_class
from .links import LINK_SALT, download_link, local_link_resolve
from .purge import document_delete, document_purge, orphans_sweep, quarantine_leftovers_purge
from .quota import storage_used, upload_limit_for, usage_for_owner
from .scanning import version_quarantine, version_rescan, version_scan, version_scan_failed
from .versions import document_create, version_add, version_restore

__all__ = [
    "LINK_SALT",
    "STUCK_PURGE_AFTER",
    "LifecycleError",
    "Scan",
    "bucket_lifecycle_configure",
    "document_create",
    "document_delete",
    "document_purge",
    "download_link",
    "lifecycle_rules",
    "local_link_resolve",
    "orphans_sweep",
    "quarantine_key_for",
    "quarantine_leftovers_purge",
    "storage_used",
    "upload_limit_for",
    "usage_for_owner",
    "version_add",
    "version_quarantine",
    "version_refresh_storage_class",
    "version_rescan",
    "version_restore",
    "version_scan",
    "version_scan_failed",
]
