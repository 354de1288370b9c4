"""Virus scans (clamd) and moving an infected version's object to quarantine."""

import logging

from django.conf import settings
from django.utils import timezone

from integrations.alerts import alert_raise
from integrations.errors import CircuitOpen, ProviderError, RateLimited
from integrations.models import Alert
from integrations.states import transition

from .. import clamd
from ..models import Document, DocumentVersion
from ..providers import backend_for
from .common import Scan, _enqueue_quarantine, _enqueue_scan, quarantine_key_for

logger = logging.getLogger(__name__)


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
