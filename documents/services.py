"""What the documents app does: store, version, restore, delete, scan, link, sweep.

Views, tasks, admin actions and the management command all call these.
Provider calls (S3 through the gateway, clamd) never run inside
transaction.atomic(): the object is stored first and its row written after,
so a failure in between leaves an orphan object, which the sweep removes,
never a row without its object.
"""

import datetime as dt
import logging
import secrets
import time
import uuid
from decimal import Decimal

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone
from django.utils.http import content_disposition_header

from integrations.alerts import alert_raise
from integrations.errors import CircuitOpen, DomainError, ProviderError, RateLimited
from integrations.models import Alert
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from . import clamd
from .content import ContentRejected, classify_upload, filename_sanitise
from .models import Document, DocumentVersion
from .providers import PREFIX, LocalBackend, S3Backend, backend_for, current_backend
from .uploads import UploadTooLarge

logger = logging.getLogger(__name__)

Scan = DocumentVersion.ScanStatus
LINK_SALT = "documents.local-download"
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


# --- Limits -------------------------------------------------------------------


def storage_used(*, owner):
    total = DocumentVersion.objects.filter(document__owner=owner, document__state=Document.State.ACTIVE).aggregate(
        total=Sum("size")
    )["total"]
    return total or 0


def upload_limit_for(user):
    """(bytes this user may upload now, "max_bytes" or "quota")."""
    max_bytes = settings.DOCUMENT_MAX_BYTES
    quota = settings.DOCUMENT_USER_QUOTA_BYTES
    if quota and getattr(user, "is_authenticated", False):
        remaining = max(0, quota - storage_used(owner=user))
        if remaining < max_bytes:
            return remaining, "quota"
    return max_bytes, "max_bytes"


# --- Upload, versions, restore -------------------------------------------------


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
    if upload.size > limit:  # a concurrent upload may have used the quota meanwhile
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


def _enqueue_scan(version_id):
    from .tasks import version_scan

    enqueue_on_commit(version_scan, version_id)


def _enqueue_quarantine(version_id):
    from .tasks import version_quarantine

    enqueue_on_commit(version_quarantine, version_id)


def document_create(*, owner, upload, sniffed):
    fields = _store(owner=owner, upload=upload, sniffed=sniffed)
    with transaction.atomic():
        document = Document.objects.create(owner=owner)
        version = DocumentVersion.objects.create(document=document, number=1, **fields)
        document.current_version = version
        document.save(update_fields=["current_version", "updated_at"])
        _enqueue_scan(version.pk)
    return document


def version_add(*, document, upload, sniffed):
    fields = _store(owner=document.owner, upload=upload, sniffed=sniffed)
    with transaction.atomic():
        # The lock numbers concurrent versions of one document one after another.
        locked = Document.objects.select_for_update().filter(pk=document.pk, state=Document.State.ACTIVE).first()
        if locked is None:
            raise DomainError(404, "not_found", "This document was deleted.")  # its stored object is swept
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


# --- Delete and purge -----------------------------------------------------------


def document_delete(*, document):
    """Gone for the client now; the stored objects are removed by a task with retries."""
    from .tasks import document_purge

    updated = Document.objects.filter(pk=document.pk, state=Document.State.ACTIVE).update(
        state=Document.State.DELETING, deleted_at=timezone.now()
    )
    if updated:
        enqueue_on_commit(document_purge, document.pk)


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
    from .tasks import document_purge

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


# --- Scanning -------------------------------------------------------------------


def version_scan(*, version_id):
    version = DocumentVersion.objects.select_related("document").filter(pk=version_id).first()
    if version is None or version.scan_status not in (Scan.PENDING, Scan.SCANNING):
        return "skipped"
    if not settings.CLAMD_URL:
        transition(DocumentVersion, version_id, Scan.UNSCANNED, frm=Scan.PENDING)
        return Scan.UNSCANNED
    # A redelivered task finds `scanning`; scanning has no side effect, so it simply scans again.
    if version.scan_status == Scan.PENDING and not transition(
        DocumentVersion, version_id, Scan.SCANNING, frm=Scan.PENDING
    ):
        return "skipped"

    def scan(chunks):
        return clamd.scan(chunks, owner=version.document.owner_id, related=version)

    try:
        result = backend_for(version.backend).read_into(
            version.storage_key, scan, owner=version.document.owner_id, related=version
        )
    except (RateLimited, ProviderError) as exc:
        # The task retries; clamd's own failure (not an open circuit) is kept as the reason.
        scanner_failed = exc.provider == clamd.PROVIDER and not isinstance(exc, CircuitOpen)
        fields = {"scan_detail": str(exc)[:255]} if scanner_failed else {}
        transition(DocumentVersion, version_id, Scan.PENDING, frm=Scan.SCANNING, **fields)
        raise
    if result.infected:
        if transition(
            DocumentVersion,
            version_id,
            Scan.INFECTED,
            frm=Scan.SCANNING,
            scan_detail=result.signature[:255],
            scanned_at=timezone.now(),
        ):
            _enqueue_quarantine(version_id)
        alert_raise(
            kind=Alert.Kind.SECURITY,
            provider="clamav",
            severity=Alert.Severity.CRITICAL,
            message=(
                f"Document {version.document_id} version {version.number} ({version.filename}) of user "
                f"{version.document.owner_id} is infected with {result.signature}; downloads are refused "
                "and the object is being moved to quarantine."
            ),
            dedupe_key=f"document_infected:{version.pk}",
        )
        return Scan.INFECTED
    transition(DocumentVersion, version_id, Scan.CLEAN, frm=Scan.SCANNING, scan_detail="", scanned_at=timezone.now())
    return Scan.CLEAN


def version_quarantine(*, version_id):
    """Move an infected version's object under DOCUMENT_QUARANTINE_PREFIX. Safe to repeat.

    Refusing downloads is not enough: a presigned S3 URL handed out before the
    scan finished stays valid until it expires, and the bytes would sit beside
    clean ones. Once the object is moved, such a URL names a key that is gone.
    The row's storage_key changes only after the original is deleted, so a retry
    always starts from the original key and finds whatever the last run left.
    """
    version = DocumentVersion.objects.select_related("document").filter(pk=version_id).first()
    if (
        version is None
        or version.scan_status != Scan.INFECTED
        or version.quarantined_at is not None
        or version.document.state != Document.State.ACTIVE  # the purge removes it
    ):
        return "skipped"
    src = version.storage_key
    dest = quarantine_key_for(src)
    outcome = backend_for(version.backend).quarantine(
        src,
        dest,
        tags={"hub-scan": "infected", "hub-signature": version.scan_detail or "unknown"},
        size=version.size,
        owner=version.document.owner_id,
        related=version,
    )
    if outcome == "missing":
        # Neither key exists: a purge removed it meanwhile, or it was lost on the backend's side.
        logger.warning("documents: infected version %s has no object at %s or %s", version_id, src, dest)
        return outcome
    DocumentVersion.objects.filter(pk=version_id, storage_key=src, quarantined_at__isnull=True).update(
        storage_key=dest, quarantined_at=timezone.now()
    )
    return outcome


def version_scan_failed(*, version_id, error):
    # An open circuit only says clamd kept failing; the last real failure, kept in scan_detail, says why.
    fields = {} if isinstance(error, CircuitOpen) else {"scan_detail": str(error)[:255]}
    transition(DocumentVersion, version_id, Scan.ERROR, **fields)


def version_rescan(*, version):
    """Admin: scan again a version that was unscanned or whose scan failed."""
    if version.scan_status in (Scan.UNSCANNED, Scan.ERROR) and transition(
        DocumentVersion, version.pk, Scan.PENDING, frm=version.scan_status
    ):
        _enqueue_scan(version.pk)
        return True
    return False


# --- Download links ---------------------------------------------------------------


def _check_downloadable(version):
    if version.scan_status == Scan.INFECTED:
        raise DomainError(
            403,
            "document_infected",
            f"This file is quarantined: the virus scanner found {version.scan_detail or 'malware'}.",
            scan_status=version.scan_status,
        )
    if settings.DOCUMENT_REQUIRE_SCAN and version.scan_status != Scan.CLEAN:
        raise DomainError(
            403,
            "document_not_scanned",
            f"This file has no clean virus scan yet (scan status: {version.scan_status}); try again later.",
            scan_status=version.scan_status,
        )


def download_link(*, version, build_absolute_uri):
    """A short-lived URL for one version: S3 presigned, or a signed hub URL for local files."""
    _check_downloadable(version)
    ttl = settings.DOCUMENT_URL_TTL_SECONDS
    expires_at = int(time.time()) + ttl
    if version.backend == DocumentVersion.Backend.S3:
        url = S3Backend().signed_url(
            version.storage_key,
            filename_disposition=content_disposition_header(True, version.filename),
            content_type=version.content_type,
            ttl=ttl,
        )
    else:
        from django.urls import reverse

        token = signing.dumps({"v": version.pk, "e": expires_at}, salt=LINK_SALT)
        url = build_absolute_uri(reverse("documents:file", args=[token]))
    return {
        "url": url,
        "expires_at": dt.datetime.fromtimestamp(expires_at, tz=dt.UTC),
        "version": version.number,
        "filename": version.filename,
        "content_type": version.content_type,
        "size": version.size,
    }


def local_link_resolve(*, token):
    """The version a hub-signed link names, if the link is genuine, unexpired and the file downloadable."""
    try:
        payload = signing.loads(token, salt=LINK_SALT)
        version_id, expires_at = int(payload["v"]), int(payload["e"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise DomainError(403, "link_invalid", "This download link is not valid; ask for a new one.") from None
    if time.time() > expires_at:
        raise DomainError(403, "link_expired", "This download link has expired; ask for a new one.")
    version = (
        DocumentVersion.objects.select_related("document")
        .filter(pk=version_id, document__state=Document.State.ACTIVE, backend=DocumentVersion.Backend.LOCAL)
        .first()
    )
    if version is None:
        raise DomainError(404, "not_found", "This file no longer exists.")
    _check_downloadable(version)
    return version


# --- Storage class, lifecycle, usage ---------------------------------------------


def version_refresh_storage_class(*, version):
    """Read the object's storage class back from S3 (lifecycle rules move objects on S3's side)."""
    storage_class = backend_for(version.backend).head_storage_class(
        version.storage_key, owner=version.document.owner_id, related=version
    )
    if storage_class != version.storage_class:
        DocumentVersion.objects.filter(pk=version.pk).update(storage_class=storage_class)
        version.storage_class = storage_class
    return storage_class


class LifecycleError(ValueError):
    pass


def lifecycle_rules():
    """The bucket's lifecycle rules for documents/, from settings."""
    ia_days, archive_days = settings.S3_LIFECYCLE_IA_DAYS, settings.S3_LIFECYCLE_ARCHIVE_DAYS
    if ia_days and settings.S3_LIFECYCLE_IA_CLASS in ("STANDARD_IA", "ONEZONE_IA") and ia_days < 30:
        raise LifecycleError(
            f"S3 moves objects to {settings.S3_LIFECYCLE_IA_CLASS} after 30 days at the earliest; S3_LIFECYCLE_IA_DAYS is {ia_days}."
        )
    if ia_days and archive_days and archive_days <= ia_days:
        raise LifecycleError(
            f"S3_LIFECYCLE_ARCHIVE_DAYS ({archive_days}) must be later than S3_LIFECYCLE_IA_DAYS ({ia_days})."
        )
    rule = {"ID": "hub-documents", "Filter": {"Prefix": PREFIX}, "Status": "Enabled"}
    transitions = []
    if ia_days:
        transitions.append({"Days": ia_days, "StorageClass": settings.S3_LIFECYCLE_IA_CLASS})
    if archive_days:
        transitions.append({"Days": archive_days, "StorageClass": settings.S3_LIFECYCLE_ARCHIVE_CLASS})
    if transitions:
        rule["Transitions"] = transitions
    if settings.S3_LIFECYCLE_ABORT_MULTIPART_DAYS:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": settings.S3_LIFECYCLE_ABORT_MULTIPART_DAYS}
    if settings.S3_LIFECYCLE_NONCURRENT_DAYS:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": settings.S3_LIFECYCLE_NONCURRENT_DAYS}
        # On a versioned bucket a deleted document leaves a delete marker; once its noncurrent
        # versions have expired the marker is all that is left and would stay forever.
        rule["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if len(rule) == 4:
        raise LifecycleError("Every lifecycle rule is switched off (all S3_LIFECYCLE_*_DAYS are 0).")
    return [rule]


def bucket_lifecycle_configure():
    rules = lifecycle_rules()
    S3Backend().lifecycle_put(rules)
    return rules


def usage_for_owner(*, owner):
    """Bytes stored (all versions), the quota, and the month's storage cost estimate by storage class."""
    rows = (
        DocumentVersion.objects.filter(document__owner=owner, document__state=Document.State.ACTIVE)
        .values("storage_class")
        .annotate(bytes=Sum("size"))
        .order_by("storage_class")
    )
    prices = settings.PROVIDER_PRICES.get("s3", {}).get("storage", {}).get("per_gb_month", {})
    by_class, total_bytes, cost = [], 0, Decimal(0)
    for row in rows:
        price = Decimal(str(prices.get(row["storage_class"], 0)))
        row_cost = Decimal(row["bytes"]) / Decimal(10**9) * price
        by_class.append({"storage_class": row["storage_class"], "bytes": row["bytes"], "monthly_cost_usd": row_cost})
        total_bytes += row["bytes"]
        cost += row_cost
    return {
        "bytes": total_bytes,
        "quota_bytes": settings.DOCUMENT_USER_QUOTA_BYTES or None,
        "max_upload_bytes": upload_limit_for(owner)[0],
        "monthly_cost_usd": cost.quantize(Decimal("0.000001")),
        "by_storage_class": by_class,
    }
