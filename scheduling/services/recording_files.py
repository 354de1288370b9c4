"""Meeting recordings: book the provider's files, refresh them, sign links to them, and stream them."""

import datetime as dt

from django.conf import settings
from django.core import signing

from integrations.errors import DomainError

from .. import capabilities
from ..models import MeetingRecording
from ..providers import google_meet, teams, webex, zoom
from .connections import _meeting_connection

_LINK_SALT = "scheduling.recording-link"


def parse_time(value):
    """An ISO 8601 time from a provider (a trailing Z included), or None."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def recordings_upsert(*, meeting, files):
    """Book the provider's recording files (a repeat updates them); a new one is copied if its owner opted in."""
    from ..recordings import recording_booked

    for f in files:
        if not f.id or not f.download_url:
            continue
        recording, created = MeetingRecording.objects.update_or_create(
            meeting=meeting,
            external_id=f.id,
            defaults={
                "file_type": f.file_type,
                "recording_type": f.recording_type,
                "size_bytes": f.size_bytes,
                "download_url": f.download_url,
                "recording_start": parse_time(f.recording_start),
                "recording_end": parse_time(f.recording_end),
            },
        )
        recording_booked(recording=recording, created=created)


def recordings_refresh(*, meeting):
    """Ask the provider for the meeting's recordings (and transcripts) and book them; the booked list."""
    spec = capabilities.PROVIDERS[meeting.provider]
    # Meet and Teams recordings need a grant beyond making meetings: 403 missing_scope names it otherwise.
    # Listing Meet's needs only the Meet scope of that grant (the Drive one is for downloads, recording_open).
    need = google_meet.RECORDS_SCOPES if meeting.provider == "google_meet" else None
    conn = _meeting_connection(meeting, spec["needs_grant"].get("cloud_recordings", "meetings"), need=need)
    if meeting.provider == "zoom":
        files = zoom.recordings_list(meeting_id=meeting.external_id, owner=meeting.owner)
    elif meeting.provider == "google_meet":
        files = google_meet.recordings_list(conn=conn, meeting_code=meeting.external_uuid)
    elif meeting.provider == "teams":
        files = teams.recordings_list(conn=conn, online_id=meeting.external_uuid) if meeting.external_uuid else []
    else:
        files = webex.recordings_list(conn=conn, external_id=meeting.external_id)
    recordings_upsert(meeting=meeting, files=files)
    return list(meeting.recordings.all())


def recording_link_token(recording):
    return signing.dumps({"r": recording.pk}, salt=_LINK_SALT)


def recording_from_token(token):
    try:
        data = signing.loads(token, salt=_LINK_SALT, max_age=settings.MEETING_RECORDING_LINK_TTL_SECONDS)
    except signing.SignatureExpired:
        raise DomainError(410, "link_expired", "This recording link has expired; ask the hub for a new one.") from None
    except signing.BadSignature:
        raise DomainError(404, "not_found", "No recording at this link.") from None
    recording = MeetingRecording.objects.select_related("meeting__owner").filter(pk=data.get("r")).first()
    if recording is None:
        raise DomainError(404, "not_found", "No recording at this link.")
    return recording


def recording_open(*, recording):
    meeting = recording.meeting
    if meeting.provider == "zoom":
        return zoom.recording_stream(download_url=recording.download_url, owner=meeting.owner)
    capability = capabilities.PROVIDERS[meeting.provider]["needs_grant"].get("cloud_recordings", "meetings")
    if meeting.provider == "google_meet":
        # The files are in the organizer's Drive: drive.meet.readonly, which connections granted meeting_records
        # before the hub downloaded them lack; the 403 missing_scope names it, nothing is called.
        conn = _meeting_connection(meeting, capability, need=google_meet.DOWNLOAD_SCOPES)
        return google_meet.recording_stream(conn=conn, download_url=recording.download_url)
    conn = _meeting_connection(meeting, capability)
    if meeting.provider == "teams":
        return teams.recording_stream(conn=conn, download_url=recording.download_url)
    return webex.recording_stream(conn=conn, download_url=recording.download_url)
