"""Recording copies: with the owner's opt-in, each completed recording is copied to the hub's storage.

Why copy at all: providers delete cloud recordings (Zoom's trash, Webex's retention) and their download
links need the provider's token, so a user who wants to keep a recording asks the hub to hold it
(`PATCH /api/v1/scheduling/preferences/ {"copy_recordings": true}`). The copy goes through the documents
app's storage backend (S3 with every request in the call log, or the filesystem in development) under
RECORDING_PREFIX, never under the documents' prefix (whose orphan sweep would remove it).

    recording_copy_request -> the row moves none/failed -> queued with its storage key chosen first,
                              so a crash mid-copy leaves an object the row names (erasure finds it)
    recording_copy         -> task body: stream from the provider (gateway) into a spool, store it
                              (an S3 PUT through the gateway, bytes_in booked), stamp `copied`; an owner
                              whose erasure began meanwhile gets nothing stored (or it is deleted again)
    recordings_storage_usage -> the stored bytes and their monthly cost from PROVIDER_PRICES["s3"]["storage"]

Every provider's files are copyable. Google Meet's are in the organizer's Google Drive: the copy needs the
connection's drive.meet.readonly (part of `meeting_records`); a connection granted before the hub asked for
it fails the copy with the 403 missing_scope detail naming the scope, never a copy that did not happen.
"""

import secrets
import tempfile
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from documents.providers import backend_for, current_backend
from integrations.errors import DomainError, RetryableError
from integrations.states import transition
from integrations.task_base import enqueue_on_commit
from privacy.erasure import erasure_under_way
from privacy.storage import s3_delete_all_versions

from .models import MeetingRecording, SchedulingPreference

RECORDING_PREFIX = "recordings/"
SPOOL_BYTES = 8 * 1024 * 1024
CHUNK = 64 * 1024
CONTENT_TYPES = {
    "MP4": "video/mp4",
    "M4A": "audio/mp4",
    "MP3": "audio/mpeg",
    "VTT": "text/vtt",
    "TRANSCRIPT": "text/vtt",
    "CC": "text/vtt",
    "TXT": "text/plain",
    "CHAT": "text/plain",
    "JSON": "application/json",
}


def copies_wanted(owner_id):
    return SchedulingPreference.objects.filter(owner_id=owner_id, copy_recordings=True).exists()


def preference_for(owner):
    return SchedulingPreference.objects.filter(owner=owner).first() or SchedulingPreference(owner=owner)


def preference_update(*, owner, copy_recordings):
    """Turn recording copies on or off. Turning them on copies recordings booked from now on, not older ones."""
    pref, _ = SchedulingPreference.objects.update_or_create(owner=owner, defaults={"copy_recordings": copy_recordings})
    return pref


def storage_prefix_for(owner_id):
    return f"{RECORDING_PREFIX}{owner_id}/"


def recording_copy_request(*, recording):
    """Queue the copy of one recording (a no-op when it is queued or copied already). True if queued."""
    from .tasks import recording_copy as recording_copy_task

    # A copy tried again keeps its key: one object per recording, whatever happened before.
    key = (
        recording.storage_key
        or f"{storage_prefix_for(recording.meeting.owner_id)}{recording.pk}-{secrets.token_hex(8)}"
    )
    backend = recording.storage_backend or current_backend().name
    with transaction.atomic():
        moved = transition(
            MeetingRecording,
            recording.pk,
            MeetingRecording.Copy.QUEUED,
            frm=recording.copy_status,
            storage_key=key,
            storage_backend=backend,
            copy_error="",
        )
        if moved:
            enqueue_on_commit(recording_copy_task, recording.pk)
    return moved


def recording_booked(*, recording, created):
    """A recording just booked from a webhook or a refresh: copy it if its owner asked for copies."""
    if created and copies_wanted(recording.meeting.owner_id):
        recording_copy_request(recording=recording)


def _content_type(recording):
    return CONTENT_TYPES.get((recording.file_type or "").upper(), "application/octet-stream")


def recording_copy(*, recording_id):
    """Task body: stream the provider's file into the hub's storage. Returns the new state (or "skipped")."""
    from . import services

    recording = MeetingRecording.objects.select_related("meeting__owner").filter(pk=recording_id).first()
    if recording is None or recording.copy_status != MeetingRecording.Copy.QUEUED:
        return "skipped"
    owner = recording.meeting.owner
    if erasure_under_way(user_id=owner.pk):
        return "skipped"  # the erasure deletes the recording's row; nothing of the owner is stored anew
    try:
        upstream = services.recording_open(recording=recording)
    except DomainError as exc:  # the connection lacks the grant, or the provider cannot hand the file out
        recording_copy_give_up(recording_id=recording.pk, error=exc.detail)
        return MeetingRecording.Copy.FAILED
    # Spooled: small files stay in memory, a long video goes to a temporary file, never whole in memory.
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        size = 0
        try:
            for chunk in upstream.iter_bytes(CHUNK):
                spool.write(chunk)
                size += len(chunk)
        except Exception as exc:  # noqa: BLE001 - the provider's stream broke after its call was logged ok
            raise RetryableError(recording.meeting.provider, f"the recording download broke off: {exc}") from exc
        finally:
            upstream.close()
        spool.seek(0)
        if _owner_erased(recording):
            return "skipped"  # erased during the download: nothing of the owner is stored anew
        try:
            storage_class = backend_for(recording.storage_backend).save(
                recording.storage_key,
                spool,
                content_type=_content_type(recording),
                size=size,
                owner=owner,
                related=recording,
            )
        except Exception:
            if _copy_orphaned(recording):
                return "skipped"
            raise
    if _copy_orphaned(recording):
        return "skipped"
    transition(
        MeetingRecording,
        recording.pk,
        MeetingRecording.Copy.COPIED,
        frm=MeetingRecording.Copy.QUEUED,
        stored_bytes=size,
        storage_class=storage_class,
        copied_at=timezone.now(),
        copy_error="",
    )
    return MeetingRecording.Copy.COPIED


def _owner_erased(recording):
    """The owner's erasure has started, or the row is gone (deleted with the meeting or the account)."""
    return (
        erasure_under_way(user_id=recording.meeting.owner_id)
        or not MeetingRecording.objects.filter(pk=recording.pk).exists()
    )


def _copy_orphaned(recording):
    """After the upload: if the owner is being erased (the erasure may have passed the copies already) or the row
    is gone, the object just stored would outlive the erasure, named by no row. It goes now, every S3 version of
    it. True if it did."""
    if not _owner_erased(recording):
        return False
    if recording.storage_backend == "s3":
        # No owner: the call log must not point at an account being erased.
        s3_delete_all_versions(recording.storage_key)
    else:
        backend_for(recording.storage_backend).delete(recording.storage_key)
    return True


def recording_copy_give_up(*, recording_id, error):
    """The task's last attempt failed: the row says why; the object (if any) stays named for erasure."""
    transition(
        MeetingRecording,
        recording_id,
        MeetingRecording.Copy.FAILED,
        frm=MeetingRecording.Copy.QUEUED,
        copy_error=str(error)[:2000],
    )


def recording_copy_retry(*, recording):
    """Staff or the owner: queue a failed copy again."""
    if recording.copy_status != MeetingRecording.Copy.FAILED:
        raise DomainError(
            409, "copy_not_failed", f"Only a failed copy can be tried again; this one is {recording.copy_status}."
        )
    recording_copy_request(recording=recording)


def recording_copy_source(*, recording, ttl):
    """Where a hub link fetches a copied recording: ("redirect", presigned S3 URL) or ("file", open file).

    The copy is served in preference to the provider's file: it is why the owner asked for it (providers delete
    cloud recordings). S3 is a presigned GET valid `ttl` seconds (the link itself is the credential, as for
    documents); the filesystem is opened for the view to stream.
    """
    filename = f"recording-{recording.pk}.{(recording.file_type or 'bin').lower()}"
    backend = backend_for(recording.storage_backend)
    if hasattr(backend, "signed_url"):
        url = backend.signed_url(
            recording.storage_key,
            filename_disposition=f'attachment; filename="{filename}"',
            content_type=_content_type(recording),
            ttl=ttl,
        )
        return "redirect", url, filename
    return "file", backend.open(recording.storage_key), filename


def recordings_storage_usage(*, owner):
    """Bytes of the owner's copies and what they cost a month, by storage class (the documents' price table)."""
    rows = (
        MeetingRecording.objects.filter(meeting__owner=owner, copy_status=MeetingRecording.Copy.COPIED)
        .values("storage_class")
        .annotate(bytes=Sum("stored_bytes"))
        .order_by("storage_class")
    )
    prices = settings.PROVIDER_PRICES.get("s3", {}).get("storage", {}).get("per_gb_month", {})
    by_class, total, cost = [], 0, Decimal(0)
    for row in rows:
        row_cost = Decimal(row["bytes"]) / Decimal(10**9) * Decimal(str(prices.get(row["storage_class"], 0)))
        by_class.append({"storage_class": row["storage_class"], "bytes": row["bytes"], "monthly_cost_usd": row_cost})
        total += row["bytes"]
        cost += row_cost
    return {
        "bytes": total,
        "monthly_cost_usd": cost.quantize(Decimal("0.000001")),
        "by_storage_class": by_class,
    }
