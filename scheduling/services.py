"""Meetings on video providers: create, change, cancel, recordings, and what webhooks tell us.

The provider is called first and its answer stamped on our row, so a meeting
row always carries the provider's real join URL and id; nothing is invented.
"""

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from integrations import registry
from integrations.errors import DomainError
from integrations.states import transition

from . import capabilities
from .models import Meeting, MeetingParticipant, MeetingRecording
from .providers import zoom

_LINK_SALT = "scheduling.recording-link"


def _check_provider(provider, data):
    spec = capabilities.PROVIDERS.get(provider)
    if spec is None:
        raise DomainError(400, "unknown_provider", f"Unknown meeting provider {provider!r}.")
    if not spec["available"]:
        raise DomainError(
            422,
            "provider_not_available",
            f"{provider} meetings are not available through the hub yet; use one of "
            f"{', '.join(p for p, s in capabilities.PROVIDERS.items() if s['available'])}.",
            provider=provider,
        )
    registry.require(spec["registry"])
    for capability, asked in capabilities.REQUESTED.items():
        if asked(data) and capability not in spec["capabilities"]:
            raise DomainError(
                422,
                "unsupported_by_provider",
                f"{provider} does not support {capability.replace('_', ' ')} through its API.",
                provider=provider,
                capability=capability,
            )


def _zone(name):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(400, "invalid", f"time_zone: unknown IANA time zone {name!r}.", field="time_zone") from None


def _zoom_payload(data):
    """The hub's meeting request in Zoom's terms (a scheduled meeting, type 2)."""
    payload = {"type": 2}
    if "topic" in data:
        payload["topic"] = data["topic"]
    if "agenda" in data:
        payload["agenda"] = data["agenda"]
    if "start_time" in data:
        payload["start_time"] = data["start_time"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if "duration_minutes" in data:
        payload["duration"] = data["duration_minutes"]
    if "time_zone" in data:
        payload["timezone"] = data["time_zone"]
    asked = data.get("settings") or {}
    zs = {}
    if asked.get("waiting_room") is not None:
        zs["waiting_room"] = asked["waiting_room"]
    if asked.get("mute_on_entry") is not None:
        zs["mute_upon_entry"] = asked["mute_on_entry"]
    if asked.get("auto_recording"):
        zs["auto_recording"] = asked["auto_recording"]
    if asked.get("registration"):
        zs["approval_type"] = 0  # registrants are approved at once and get their own join link
        zs["registrants_email_notification"] = True
    if data.get("breakout_rooms"):
        zs["breakout_room"] = {
            "enable": True,
            "rooms": [
                {"name": r["name"], "participants": list(r.get("participants", []))} for r in data["breakout_rooms"]
            ],
        }
    if zs:
        payload["settings"] = zs
    return payload


def _stamp(meeting, zm):
    meeting.external_id = zm.id
    meeting.external_uuid = zm.uuid
    meeting.join_url = zm.join_url
    meeting.passcode = zm.passcode
    meeting.dial_in = zm.dial_in
    meeting.raw = zm.raw


def meeting_create(
    *,
    owner,
    provider,
    topic,
    start_time,
    duration_minutes,
    time_zone="UTC",
    agenda="",
    participants=(),
    meeting_settings=None,
    breakout_rooms=(),
):  # noqa: E501
    data = {
        "topic": topic,
        "start_time": start_time,
        "duration_minutes": duration_minutes,
        "time_zone": time_zone,
        "agenda": agenda,
        "settings": meeting_settings or {},
        "breakout_rooms": list(breakout_rooms),
    }
    _check_provider(provider, data)
    _zone(time_zone)
    if start_time <= timezone.now():
        raise DomainError(400, "invalid", "start_time: a meeting must start in the future.", field="start_time")
    emails = {p["email"].lower() for p in participants}
    for room in breakout_rooms:
        strangers = [e for e in room.get("participants", []) if e.lower() not in emails]
        if strangers:
            raise DomainError(
                400,
                "invalid",
                f"breakout_rooms: {', '.join(strangers)} in room {room['name']!r} is not a participant.",
                field="breakout_rooms",
            )

    zm = zoom.meeting_create(payload=_zoom_payload(data), owner=owner)
    rooms = {e.lower(): r["name"] for r in breakout_rooms for e in r.get("participants", [])}
    with transaction.atomic():
        meeting = Meeting(
            owner=owner,
            provider=provider,
            topic=topic,
            agenda=agenda,
            start_time=start_time,
            duration_minutes=duration_minutes,
            time_zone=time_zone,
            meeting_settings=data["settings"],
        )
        _stamp(meeting, zm)
        meeting.save()
        for p in participants:
            MeetingParticipant.objects.create(
                meeting=meeting,
                email=p["email"],
                name=p.get("name", ""),
                breakout_room=rooms.get(p["email"].lower(), ""),
            )
    if data["settings"].get("registration"):
        for participant in meeting.participants.all():
            first, _, last = (participant.name or "").partition(" ")
            reg = zoom.registrant_add(
                meeting_id=meeting.external_id, email=participant.email, first_name=first, last_name=last, owner=owner
            )
            participant.registrant_id, participant.join_url = reg.id, reg.join_url
            participant.save(update_fields=["registrant_id", "join_url"])
    return meeting


def meeting_update(*, meeting, **changes):
    if meeting.status == Meeting.Status.CANCELLED:
        raise DomainError(409, "meeting_cancelled", "This meeting was cancelled; create a new one.")
    _check_provider(meeting.provider, changes)
    if "time_zone" in changes:
        _zone(changes["time_zone"])
    if "start_time" in changes and changes["start_time"] <= timezone.now():
        raise DomainError(400, "invalid", "start_time: a meeting must start in the future.", field="start_time")
    payload = _zoom_payload(changes)
    payload.pop("type")
    if payload:
        zoom.meeting_update(meeting_id=meeting.external_id, payload=payload, owner=meeting.owner)
    fresh = zoom.meeting_get(meeting_id=meeting.external_id, owner=meeting.owner)
    for name in ("topic", "agenda", "start_time", "duration_minutes", "time_zone"):
        if name in changes:
            setattr(meeting, name, changes[name])
    if "settings" in changes:
        meeting.meeting_settings = {**meeting.meeting_settings, **changes["settings"]}
    _stamp(meeting, fresh)
    meeting.save()
    return meeting


def meeting_cancel(*, meeting, notify=True):
    """Delete it on the provider (which tells registrants when `notify`), then mark it cancelled. Idempotent."""
    if meeting.status == Meeting.Status.CANCELLED:
        return meeting
    zoom.meeting_delete(meeting_id=meeting.external_id, notify=notify, owner=meeting.owner)
    transition(Meeting, meeting.pk, Meeting.Status.CANCELLED)
    meeting.refresh_from_db()
    return meeting


def parse_time(value):
    """An ISO 8601 time from a provider (a trailing Z included), or None."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def recordings_upsert(*, meeting, files):
    for f in files:
        if not f.id or not f.download_url:
            continue
        MeetingRecording.objects.update_or_create(
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


def recordings_refresh(*, meeting):
    recordings_upsert(meeting=meeting, files=zoom.recordings_list(meeting_id=meeting.external_id, owner=meeting.owner))
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
    return zoom.recording_stream(download_url=recording.download_url, owner=recording.meeting.owner)


# --- webhooks ---------------------------------------------------------------------------


def meeting_for_event(provider, external_id):
    return Meeting.objects.filter(provider=provider, external_id=str(external_id)).first()


def meeting_moved(*, meeting, status, occurred_at, when=None):
    fields = {"started_at": when} if status == Meeting.Status.STARTED else {"ended_at": when}
    fields = {k: v for k, v in fields.items() if v is not None}
    return transition(Meeting, meeting.pk, status, occurred_at=occurred_at, **fields)


def attendance_record(*, meeting, email, name, joined_at=None, left_at=None):
    if not email:
        return  # a guest without an email cannot be matched to an invitee; the raw event stays in the inbox
    participant, _ = MeetingParticipant.objects.get_or_create(meeting=meeting, email=email, defaults={"name": name})
    if joined_at and (participant.joined_at is None or joined_at < participant.joined_at):
        participant.joined_at = joined_at
    if left_at and (participant.left_at is None or left_at > participant.left_at):
        participant.left_at = left_at
    participant.save(update_fields=["joined_at", "left_at"])
