"""Exports: request, build (a task), link, purge.

The zip is written to a temporary file (zipfile streams each member), then uploaded from that file:
memory stays flat whatever the user holds. Progress is the share of apps written so far.
"""

import datetime as dt
import hashlib
import logging
import tempfile
import time
import zipfile

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import transaction
from django.utils import timezone

from integrations.audit.services import audit_record
from integrations.errors import DomainError
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from . import readme, registry, storage
from .erasure import erasure_under_way
from .models import Export
from .writer import ExportWriter

logger = logging.getLogger(__name__)

LINK_SALT = "privacy.export-download"
ACTIVE = (Export.Status.QUEUED, Export.Status.BUILDING)
# An export not finished this long after it was queued (a lost task message, a killed worker) is queued again.
STALE_AFTER = dt.timedelta(minutes=30)
ERASED_DETAIL = "The account is being erased: this export was discarded and its zip deleted."


def _enqueue(export_id):
    from .tasks import export_build

    enqueue_on_commit(export_build, export_id)


def export_request(*, subject, requested_by, include_all_versions=False, request=None):
    """Queue an export of `subject`'s data; a second request while one is in progress returns that one."""
    if requested_by.pk != subject.pk and not requested_by.is_staff:
        raise DomainError(403, "forbidden", "Only staff may export another user's data.")
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=subject.pk).first()  # one request at a time per user
        running = Export.objects.filter(owner=subject, status__in=ACTIVE).first()
        if running is not None:
            return running, False
        now = timezone.now()
        export = Export.objects.create(
            owner=subject,
            requested_by=requested_by,
            include_all_versions=include_all_versions,
            expires_at=now + dt.timedelta(days=settings.PRIVACY_EXPORT_RETENTION_DAYS),
            next_attempt_at=now + STALE_AFTER,
        )
        audit_record(
            action="privacy.export",
            actor=requested_by,
            target=("auth.user", subject.pk),
            request=request,
            export=export.pk,
            all_versions=include_all_versions,
        )
        _enqueue(export.pk)
    return export, True


def _progress(export, **fields):
    Export.objects.filter(pk=export.pk).update(**fields)


def export_build(*, export_id):
    """Write every holder's part into one zip, upload it, mark the export ready. Safe to run again."""
    export = Export.objects.select_related("owner").filter(pk=export_id).first()
    if export is None or export.status not in ACTIVE:
        return None
    if erasure_under_way(user_id=export.owner_id):
        _discard(export.pk, key=None, erased=True)
        return None
    now = timezone.now()
    transition(Export, export.pk, Export.Status.BUILDING, started_at=now, next_attempt_at=now + STALE_AFTER)
    user = export.owner
    holders = [h for h in registry.holders() if h.export is not None]
    with tempfile.NamedTemporaryFile(suffix=".zip", dir=settings.PRIVACY_EXPORT_TMP_DIR) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            out = ExportWriter(zf, include_all_versions=export.include_all_versions)
            for n, holder in enumerate(holders):
                _progress(export, step=holder.app, progress=int(100 * n / (len(holders) + 1)))
                try:
                    holder.export(user, out)
                except Exception:
                    if not _gone_with_its_owner(export.pk, user.pk):
                        raise
                    # The erasure deleted what this holder was reading (a recording copy, a document's
                    # object): not a fault to retry or alert staff about, an export whose owner is going.
                    _discard(export.pk, key=None, erased=True)
                    return None
            out.text(
                "README.txt",
                readme.export_readme(
                    user=user, export=export, files=out.files, omitted=[(n, note) for n, note, _ in out.omitted]
                ),
            )
        size = tmp.tell()
        tmp.seek(0)
        digest = hashlib.sha256()
        while chunk := tmp.read(1024 * 1024):
            digest.update(chunk)
        tmp.seek(0)
        key = export.storage_key or storage.new_key()
        if erasure_under_way(user_id=user.pk):  # it began while the zip was being written: never upload it
            _discard(export.pk, key=None, erased=True)
            return None
        # The key is on the row before the upload starts, so an erasure that deletes the row's zip from
        # here on deletes this one too, or deletes the row, which the move to `ready` below then notices.
        _progress(export, step="upload", progress=int(100 * len(holders) / (len(holders) + 1)), storage_key=key)
        storage.save(key, tmp, size=size, owner=user)
    manifest = {
        "files": [name for name, _ in out.files],
        "rows": out.counts,
        "omitted": [entry for _, _, entry in out.omitted],
    }
    erased = erasure_under_way(user_id=user.pk)
    if erased or not transition(
        Export,
        export.pk,
        Export.Status.READY,
        frm=Export.Status.BUILDING,
        progress=100,
        step="",
        size=size,
        sha256=digest.hexdigest(),
        manifest=manifest,
        finished_at=timezone.now(),
        next_attempt_at=None,
        error="",
    ):
        # Erased while uploading, or the row is gone (erasure deleted it) or moved on: a zip that no row
        # names would outlive every purge, so it goes now.
        _discard(export.pk, key=key, erased=erased)
        return None
    return export.pk


def _gone_with_its_owner(export_id, owner_id):
    """True once the owner's erasure has started deleting, or has deleted this export's row already."""
    return erasure_under_way(user_id=owner_id) or not Export.objects.filter(pk=export_id).exists()


def _discard(export_id, *, key, erased):
    """Delete the zip a build uploaded at `key` that must not be kept; an erased user's export is marked expired.

    A zip the row still names as ready (another run of the same build finished with it) stays, unless the
    owner is being erased.
    """
    row = Export.objects.filter(pk=export_id).values("status", "storage_key").first()
    keys = {key} if key else set()
    if erased and row is not None:
        keys.add(row["storage_key"])
    elif row is not None and row["status"] == Export.Status.READY:
        keys.discard(row["storage_key"])
    for k in keys - {""}:
        storage.delete(k)  # no owner: the call log must not point at an account being erased
    if erased and row is not None:
        transition(
            Export,
            export_id,
            Export.Status.EXPIRED,
            storage_key="",
            error=ERASED_DETAIL,
            finished_at=timezone.now(),
            next_attempt_at=None,
        )


def export_failed(*, export_id, error):
    """The build gave up: say so on the row (the zip, if any, is removed by the purge)."""
    transition(
        Export,
        export_id,
        Export.Status.FAILED,
        error=str(error)[:2000],
        finished_at=timezone.now(),
        next_attempt_at=None,
    )


def export_link(*, export, build_absolute_uri):
    """A download link valid PRIVACY_EXPORT_LINK_TTL_SECONDS (never past the export's own expiry)."""
    if export.status != Export.Status.READY:
        raise DomainError(409, "export_not_ready", f"This export is {export.status}; there is nothing to download.")
    remaining = int((export.expires_at - timezone.now()).total_seconds())
    if remaining < 1:  # past its expiry, the purge (every few minutes) just has not deleted it yet
        raise DomainError(410, "export_expired", "This export has expired; ask for a new one.")
    ttl = min(settings.PRIVACY_EXPORT_LINK_TTL_SECONDS, remaining)
    expires_at = int(time.time()) + ttl
    filename = f"export-{export.pk}-{export.created_at:%Y%m%d}.zip"
    url = storage.signed_url(export.storage_key, filename=filename, ttl=ttl)
    if url is None:
        from django.urls import reverse

        token = signing.dumps({"x": export.pk, "e": expires_at}, salt=LINK_SALT)
        url = build_absolute_uri(reverse("privacy:export-file", args=[token]))
    return {"url": url, "expires_at": dt.datetime.fromtimestamp(expires_at, tz=dt.UTC), "filename": filename}


def export_link_resolve(*, token):
    """The export a hub-signed link names, if the link is genuine and unexpired and the zip still there."""
    try:
        payload = signing.loads(token, salt=LINK_SALT)
        export_id, expires_at = int(payload["x"]), int(payload["e"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise DomainError(403, "link_invalid", "This download link is not valid; ask for a new one.") from None
    if time.time() > expires_at:
        raise DomainError(403, "link_expired", "This download link has expired; ask for a new one.")
    export = Export.objects.filter(pk=export_id, status=Export.Status.READY, expires_at__gt=timezone.now()).first()
    if export is None or not storage.exists_local(export.storage_key):
        raise DomainError(404, "not_found", "This export no longer exists.")
    return export


def export_delete_file(export):
    storage.delete(export.storage_key, owner=export.owner_id)
    Export.objects.filter(pk=export.pk).update(storage_key="")


def exports_purge(*, now=None):
    """Delete zips past their expiry (PRIVACY_EXPORT_RETENTION_DAYS) and mark the rows expired."""
    now = now or timezone.now()
    purged = 0
    for export in Export.objects.filter(expires_at__lte=now).exclude(status=Export.Status.EXPIRED):
        export_delete_file(export)
        transition(Export, export.pk, Export.Status.EXPIRED, next_attempt_at=None)
        purged += 1
    return purged


def exports_requeue_stale(*, now=None):
    """Queue again the builds whose task was lost (broker down after commit, worker killed)."""
    now = now or timezone.now()
    ids = list(
        Export.objects.filter(status__in=ACTIVE, next_attempt_at__lte=now, expires_at__gt=now).values_list(
            "pk", flat=True
        )
    )
    for pk in ids:
        Export.objects.filter(pk=pk).update(next_attempt_at=now + STALE_AFTER)
        _enqueue(pk)
    return len(ids)
