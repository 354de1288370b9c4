"""Short-lived download links: S3 presigned, or hub-signed for local files."""

import datetime as dt
import time

from django.conf import settings
from django.core import signing
from django.utils.http import content_disposition_header

from integrations.errors import DomainError

from ..models import Document, DocumentVersion
from ..providers import S3Backend
from .common import Scan

LINK_SALT = "documents.local-download"


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
