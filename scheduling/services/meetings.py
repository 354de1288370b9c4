"""Meetings on the provider first, then on our row: create, change, cancel.

A create under the client's Idempotency-Key is made once however often the client retries after a lost answer
(a timeout, a reset, a 5xx: the API keeps no record of those, integrations.api.idempotency). Google Meet and Teams
take the create id (calendars.create_id) as the event's id / transactionId and answer a retry with what the lost
attempt made. Zoom and Webex take no such id: their meetings carry it as a custom key / integration tag, and
create_once.py tells a retry when to look it up first. Every provider's finished create is recorded there, so a
retry once the API's record of the key is gone is answered with the meeting it made (or a 409 if it was cancelled).
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations import webhooks
from integrations.errors import DomainError, PermanentError, ProviderError
from integrations.states import transition

from .. import teams_lifecycle
from ..models import Meeting, MeetingParticipant
from ..providers import google_meet, teams, webex, zoom
from ..providers.common import MeetingSpec
from .connections import _calendar_connection, _check_provider, _connection, _meeting_connection, _zone
from .create_once import create_finished, create_once, create_record, made_before

# The package's name, as before the split: log filters and readers see the same logger.
logger = logging.getLogger(__package__)


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


def _stamp(meeting, pm):
    meeting.external_id = pm.id
    meeting.external_uuid = pm.uuid
    meeting.join_url = pm.join_url
    meeting.passcode = pm.passcode
    meeting.dial_in = pm.dial_in
    meeting.raw = pm.raw


def _provider_settings(provider, asked):
    """Settings as the request gave them, minus defaults that ask for nothing (so they reach no provider)."""
    asked = dict(asked or {})
    if provider != "zoom":
        asked.pop("registration", None)
        if asked.get("auto_recording") == "none":
            asked.pop("auto_recording")
    return asked


def _create_on_provider(provider, *, owner, conn, data, spec, idempotency_key="", record=None):
    if provider == "zoom":
        payload = _zoom_payload(data)
        return create_once(
            record,
            create=lambda made_id: zoom.meeting_create(payload=payload, owner=owner, create_id=made_id),
            find=lambda made_id: zoom.meeting_find(
                create_id=made_id, topic=payload["topic"], start_time=data["start_time"], owner=owner
            ),
        )
    if provider == "google_meet":
        # The key makes the event's id: a retry after a lost answer finds the meeting the lost attempt made.
        created = google_meet.meeting_create(conn=conn, spec=spec, idempotency_key=idempotency_key)
        if (created.raw or {}).get("status") == "cancelled":
            raise DomainError(
                409,
                "meeting_deleted",
                "An earlier attempt of this create (same Idempotency-Key) made the meeting, and it has been "
                "deleted since; to make it again, send the create with a new Idempotency-Key.",
            )
        return created
    if provider == "teams":
        # The key makes the event's transactionId: a retry after a lost answer is answered with the meeting made.
        return teams.meeting_create(conn=conn, spec=spec, idempotency_key=idempotency_key)
    created = create_once(
        record,
        create=lambda made_id: webex.meeting_create(conn=conn, spec=spec, create_id=made_id),
        find=lambda made_id: webex.meeting_find(conn=conn, spec=spec, create_id=made_id),
    )
    _webex_webhooks(conn)
    return created


def _webex_webhooks(conn):
    """Make sure Webex sends this user's meeting events to the hub (needs WEBEX_WEBHOOK_SECRET and APP_URL)."""
    secrets = webhooks.secrets_from("WEBEX_WEBHOOK_SECRET")
    if not secrets or not settings.APP_URL:
        return
    try:
        webex.webhooks_ensure(
            conn=conn, target_url=settings.APP_URL.rstrip("/") + "/webhooks/webex/", secret=secrets[0]
        )
    except ProviderError:
        # The meeting exists at Webex already; the next create tries the registration again.
        logger.warning("webex webhook registration failed", extra={"connection": conn.pk}, exc_info=True)


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
    connection=None,
    calendar_event=None,
    idempotency_key="",
):
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
    conn = _connection(owner=owner, provider=provider, connection_id=connection)
    calendar_conn = _calendar_connection(owner=owner, provider=provider, ref=calendar_event)
    spec = MeetingSpec(
        topic=topic,
        agenda=agenda,
        start_time=start_time,
        duration_minutes=duration_minutes,
        time_zone=time_zone,
        participants=tuple(participants),
        settings=_provider_settings(provider, data["settings"]),
        breakout_rooms=tuple(breakout_rooms),
    )
    request = {"meeting": data, "participants": list(participants), "calendar_event": calendar_event}
    record = create_record(provider, owner=owner, conn=conn, idempotency_key=idempotency_key, request=request)
    if record is not None and record.meeting_id:
        return made_before(record)
    pm = _create_on_provider(
        provider, owner=owner, conn=conn, data=data, spec=spec, idempotency_key=idempotency_key, record=record
    )
    rooms = {e.lower(): r["name"] for r in breakout_rooms for e in r.get("participants", [])}
    with transaction.atomic():
        meeting = Meeting(
            owner=owner,
            provider=provider,
            connection=conn,
            calendar_connection=calendar_conn,
            calendar_event_id=calendar_event["event_id"] if calendar_conn else "",
            topic=topic,
            agenda=agenda,
            start_time=start_time,
            duration_minutes=duration_minutes,
            time_zone=time_zone,
            meeting_settings=data["settings"],
        )
        _stamp(meeting, pm)
        meeting.save()
        for p in participants:
            MeetingParticipant.objects.create(
                meeting=meeting,
                email=p["email"],
                name=p.get("name", ""),
                breakout_room=rooms.get(p["email"].lower(), ""),
            )
        create_finished(record, meeting)
    if provider == "google_meet":
        from ..meet_events import meeting_subscribe_later

        meeting_subscribe_later(meeting)  # lifecycle events, when the hub and the connection can have them
    if provider == "zoom" and data["settings"].get("registration"):
        try:
            for participant in meeting.participants.all():
                first, _, last = (participant.name or "").partition(" ")
                reg = zoom.registrant_add(
                    meeting_id=meeting.external_id,
                    email=participant.email,
                    first_name=first,
                    last_name=last,
                    owner=owner,
                )
                participant.registrant_id, participant.join_url = reg.id, reg.join_url
                participant.save(update_fields=["registrant_id", "join_url"])
        except ProviderError:
            # The client is told the create failed: the meeting must not stay behind at Zoom or here, or its
            # retry (same Idempotency-Key: an error leaves no record) makes a second one. Its MeetingCreate goes
            # with the row, so that retry makes the meeting anew rather than adopt the one being deleted.
            _undo_create(meeting, owner)
            raise
    if provider == "teams":
        teams_lifecycle.meeting_created(meeting)
    return meeting


def _undo_create(meeting, owner):
    """Take back a meeting whose create failed half way: its row goes, and Zoom's meeting is deleted now or, when
    Zoom cannot be asked now (the limiter is pausing after a 429, an outage), by a retrying task."""
    from integrations.task_base import enqueue_on_commit

    from ..tasks import zoom_meeting_delete_task

    external_id = meeting.external_id
    meeting.delete()
    try:
        zoom.meeting_delete(meeting_id=external_id, notify=False, owner=owner)
    except ProviderError:
        logger.warning("zoom meeting of a failed create: deleted later", extra={"zoom_meeting": external_id})
        enqueue_on_commit(zoom_meeting_delete_task, external_id, owner.pk)


def _calendar_event_follow(meeting, *, cancelled=False):
    """The calendar event a Zoom/Webex meeting is attached to follows the meeting (issue 19 point 6, the other
    way round from scheduling.consistency): moved with it, cancelled with it. Sent with origin="hub", which
    consistency ignores, so nothing bounces back. The meeting has changed at its provider already: a calendar
    that cannot follow (revoked, an outage, the event not synced here) is logged, not an error of the request."""
    if not (meeting.calendar_connection_id and meeting.calendar_event_id):
        return
    from ..calendars.services import _calendar_conn, adapter_for, announce, event_store
    from ..calendars.types import EventWrite
    from ..models import CalendarEvent

    row = (
        CalendarEvent.objects.select_related("calendar__connection", "calendar__owner")
        .filter(calendar__connection_id=meeting.calendar_connection_id, external_id=meeting.calendar_event_id)
        .exclude(status=CalendarEvent.Status.CANCELLED)
        .first()
    )
    if row is None or row.all_day or row.recurrence:
        return
    calendar = row.calendar
    try:
        conn = _calendar_conn(calendar, "write")
        adapter = adapter_for(calendar)
        if cancelled:
            adapter.event_delete(conn, calendar, row.external_id, notify=True)
            CalendarEvent.objects.filter(pk=row.pk).update(status=CalendarEvent.Status.CANCELLED)
            row.status = CalendarEvent.Status.CANCELLED
            announce(calendar, [row], origin="hub")
            return
        end = meeting.start_time + dt.timedelta(minutes=meeting.duration_minutes)
        if row.start == meeting.start_time and row.end == end:
            return
        write = EventWrite(all_day=False, start=meeting.start_time, end=end, time_zone=row.time_zone or "UTC")
        stored, _ = event_store(calendar, adapter.event_patch(conn, calendar, row.external_id, write, notify=True))
        announce(calendar, [stored], origin="hub")
    except (DomainError, ProviderError):
        logger.warning(
            "calendar event did not follow its meeting",
            extra={"meeting": meeting.pk, "event": meeting.calendar_event_id},
            exc_info=True,
        )


def _update_on_provider(meeting, conn, changes, *, notify=True):
    if meeting.provider == "zoom":
        payload = _zoom_payload(changes)
        payload.pop("type")
        if payload:
            zoom.meeting_update(meeting_id=meeting.external_id, payload=payload, owner=meeting.owner)
        return zoom.meeting_get(meeting_id=meeting.external_id, owner=meeting.owner)
    timing = {"start_time", "duration_minutes", "time_zone"} & set(changes)
    spec = MeetingSpec(
        topic=changes.get("topic"),
        agenda=changes.get("agenda"),
        # Calendar events and Webex meetings store a start and an end: a change to either moves both.
        start_time=changes.get("start_time", meeting.start_time) if timing else None,
        duration_minutes=changes.get("duration_minutes", meeting.duration_minutes) if timing else None,
        time_zone=changes.get("time_zone", meeting.time_zone) if timing else None,
        settings=_provider_settings(meeting.provider, changes.get("settings")),
    )
    if meeting.provider == "google_meet":
        return google_meet.meeting_update(conn=conn, external_id=meeting.external_id, spec=spec, notify=notify)
    if meeting.provider == "teams":
        return teams.meeting_update(
            conn=conn, external_id=meeting.external_id, online_id=meeting.external_uuid, spec=spec
        )
    return webex.meeting_update(conn=conn, external_id=meeting.external_id, spec=spec, notify=notify)


def meeting_update(*, meeting, notify=True, follow_calendar=True, **changes):
    if meeting.status == Meeting.Status.CANCELLED:
        raise DomainError(409, "meeting_cancelled", "This meeting was cancelled; create a new one.")
    _check_provider(meeting.provider, changes)
    if "time_zone" in changes:
        _zone(changes["time_zone"])
    if "start_time" in changes and changes["start_time"] <= timezone.now():
        raise DomainError(400, "invalid", "start_time: a meeting must start in the future.", field="start_time")
    conn = _meeting_connection(meeting)
    try:
        fresh = _update_on_provider(meeting, conn, changes, notify=notify)
    except PermanentError as exc:
        if not _gone_at_provider(meeting.provider, exc):
            raise
        _deleted_at_provider(meeting)
    if meeting.provider == "google_meet" and (fresh.raw or {}).get("status") == "cancelled":
        _deleted_at_provider(meeting)  # Google keeps a deleted event, as cancelled, and answers it
    for name in ("topic", "agenda", "start_time", "duration_minutes", "time_zone"):
        if name in changes:
            setattr(meeting, name, changes[name])
    if "settings" in changes:
        meeting.meeting_settings = {**meeting.meeting_settings, **changes["settings"]}
    _stamp(meeting, fresh)
    meeting.save()
    if follow_calendar and {"start_time", "duration_minutes"} & set(changes):
        _calendar_event_follow(meeting)
    return meeting


def _gone_at_provider(provider, exc):
    """The provider's answer that the meeting no longer exists there: Zoom's 3001, a 404 or 410 elsewhere."""
    if provider == "zoom":
        return exc.http_status == 404 and exc.code == str(zoom.MEETING_NOT_FOUND)
    return exc.http_status in (404, 410)


def _deleted_at_provider(meeting):
    """A change found the meeting deleted at its provider (in the provider's own app, with no webhook to tell the
    hub): the row is cancelled as the provider's delete webhook would, and the client told so, not sent a 502."""
    transition(Meeting, meeting.pk, Meeting.Status.CANCELLED)
    meeting_stop_listening(meeting)
    raise DomainError(
        409,
        "meeting_cancelled",
        f"This meeting was deleted at {meeting.provider}, so the hub marked it cancelled; create a new one.",
    )


def meeting_cancel(*, meeting, notify=True, follow_calendar=True):
    """Delete it on the provider (which tells participants when `notify`), then mark it cancelled. Idempotent."""
    if meeting.status == Meeting.Status.CANCELLED:
        return meeting
    conn = _meeting_connection(meeting)
    if meeting.provider == "zoom":
        zoom.meeting_delete(meeting_id=meeting.external_id, notify=notify, owner=meeting.owner)
    elif meeting.provider == "google_meet":
        google_meet.meeting_cancel(conn=conn, external_id=meeting.external_id, notify=notify)
    elif meeting.provider == "teams":
        teams.meeting_cancel(conn=conn, external_id=meeting.external_id, notify=notify)
    else:
        webex.meeting_cancel(conn=conn, external_id=meeting.external_id, notify=notify)
    transition(Meeting, meeting.pk, Meeting.Status.CANCELLED)
    if follow_calendar:
        _calendar_event_follow(meeting, cancelled=True)
    meeting_stop_listening(meeting)
    meeting.refresh_from_db()
    return meeting


def meeting_stop_listening(meeting):
    """A meeting was cancelled (here, or through its calendar event): close its lifecycle subscriptions."""
    if meeting.provider == "teams":
        teams_lifecycle.meeting_cancelled(meeting)
    if meeting.provider == "google_meet":
        from ..meet_events import meeting_unsubscribe_later

        meeting_unsubscribe_later(meeting)
