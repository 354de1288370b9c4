"""Upload a document, add a version, restore an older one.

The object is stored first and its row written after (never inside
transaction.atomic()), so a failure in between leaves an orphan object, which
the sweep removes, never a row without its object. An upload the row's
transaction refuses (the quota checked again, the document deleted) has its
object removed at once, the sweep remaining the backstop.
"""

import logging
from contextlib import contextmanager

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from integrations.errors import DomainError

from ..content import ContentRejected, classify_upload, filename_sanitise
from ..models import Document, DocumentVersion
from ..providers import backend_for, current_backend
from ..uploads import UploadTooLarge
from .common import Scan, _enqueue_scan, _new_storage_key
from .quota import quota_recheck_locked, upload_limit_for

logger = logging.getLogger(__name__)


def _store(*, owner, upload, sniffed):
    """Check the upload's content and store it under a new random key; the version's fields."""
    filename = filename_sanitise(upload.name)
    try:
        content_type = classify_upload(
            fileobj=upload, sniffed=sniffed, filename=filename, claimed_content_type=upload.content_type
        )
    except ContentRejected as exc:
        raise DomainError(415, exc.code, exc.detail, **exc.extra) from None
    limit, reason = upload_limit_for(owner)
    # A concurrent upload may have used the quota meanwhile. One still being stored is counted only once
    # its row is written, so the transaction that writes this one's row checks again (quota_recheck_locked).
    if upload.size > limit:
        raise UploadTooLarge(limit, reason)

    backend = current_backend()
    key = _new_storage_key()
    upload.seek(0)
    storage_class = backend.save(key, upload, content_type=content_type, size=upload.size, owner=owner)
    return {
        "filename": filename,
        "content_type": content_type,
        "size": upload.size,
        "sha256": sniffed.sha256,
        "backend": backend.name,
        "storage_key": key,
        "storage_class": storage_class,
    }


@contextmanager
def _refusal_removes_stored(fields, *, owner):
    """A refusal raised in the transaction that would write the row (rolled back: no row names the object) removes
    the object just stored, best effort; the orphan sweep removes what this could not. Only refusals: an error of
    the commit itself may come after the row was written."""
    try:
        yield
    except (UploadTooLarge, DomainError):
        try:
            backend_for(fields["backend"]).delete(fields["storage_key"], owner=owner.pk)
        except Exception:  # noqa: BLE001 - the client's answer is the refusal; the sweep removes the object later
            logger.warning(
                "documents: could not remove refused upload %s; the orphan sweep will", fields["storage_key"]
            )
        raise


def document_create(*, owner, upload, sniffed):
    fields = _store(owner=owner, upload=upload, sniffed=sniffed)
    with _refusal_removes_stored(fields, owner=owner), transaction.atomic():
        quota_recheck_locked(owner=owner, size=fields["size"])
        document = Document.objects.create(owner=owner)
        version = DocumentVersion.objects.create(document=document, number=1, **fields)
        document.current_version = version
        document.save(update_fields=["current_version", "updated_at"])
        _enqueue_scan(version.pk)
    return document


def version_add(*, document, upload, sniffed):
    fields = _store(owner=document.owner, upload=upload, sniffed=sniffed)
    with _refusal_removes_stored(fields, owner=document.owner), transaction.atomic():
        quota_recheck_locked(owner=document.owner, size=fields["size"])  # the owner's lock first, then the document's
        # The lock numbers concurrent versions of one document one after another.
        locked = Document.objects.select_for_update().filter(pk=document.pk, state=Document.State.ACTIVE).first()
        if locked is None:
            raise DomainError(404, "not_found", "This document was deleted.")
        number = (locked.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        version = DocumentVersion.objects.create(document=locked, number=number, **fields)
        locked.current_version = version
        locked.save(update_fields=["current_version", "updated_at"])
        _enqueue_scan(version.pk)
    return version


def version_restore(*, document, version):
    """Make an older version current again (no copy: versions are immutable)."""
    if version.scan_status == Scan.INFECTED:
        raise DomainError(
            403,
            "document_infected",
            f"Version {version.number} is quarantined ({version.scan_detail}); it cannot be restored.",
        )
    Document.objects.filter(pk=document.pk, state=Document.State.ACTIVE).update(
        current_version=version, updated_at=timezone.now()
    )
    document.refresh_from_db()
    return document
