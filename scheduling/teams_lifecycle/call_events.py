"""Live Teams call events (Graph's meetingCallEvents): when the hub may subscribe to them, and what one does.

They need what a delegated app cannot have (teams_lifecycle.subscriptions subscribes with the hub app's own token
in MICROSOFT_APP_TENANT_ID, and Graph encrypts each event to TEAMS_CALL_EVENTS_CERTIFICATE; the webhook
decrypts it). Applied in the inbox handler, with no provider call: the event says what happened and when.
"""

from django.conf import settings
from django.db.models import Q

from integrations.task_base import enqueue_on_commit

from .. import lifecycle
from ..calendars.times import parse_instant
from ..capabilities import NEEDS_SETTINGS
from ..models import Meeting, MeetingAttendance

CALL_EVENT_SETTINGS = NEEDS_SETTINGS["teams"]["lifecycle_webhooks"]


def call_events_missing():
    """The settings live call events still need ([] = the hub holds an application permission and a key)."""
    return [name for name in CALL_EVENT_SETTINGS if not getattr(settings, name, "")]


def _tenant_of(conn):
    # Microsoft connections store "<object id>.<tenant id>" (integrations.oauth.providers.microsoft).
    return (conn.account_id or "").rpartition(".")[2].lower() if conn is not None else ""


def call_events_for(conn):
    """Live call events for this organizer's meetings: configured, and the organizer in the configured tenant
    (an app token of one tenant sees that tenant's meetings only)."""
    return (
        not call_events_missing()
        and conn is not None
        and conn.status == "active"
        and _tenant_of(conn) == settings.MICROSOFT_APP_TENANT_ID.strip().lower()
    )


def _instant(value):
    return parse_instant(value) if value else None


def _participant(entry):
    """(key, name) of a roster entry: the Graph identity's id (user, guest, phone...), else the call's participant id."""
    identity = (entry.get("info") or {}).get("identity") or {}
    person = next((v for v in identity.values() if isinstance(v, dict) and v.get("id")), {})
    return str(person.get("id") or entry.get("id") or ""), person.get("displayName") or ""


def _already_booked(meeting, key, when, *, left):
    """Whether this join or leave repeats what a stretch already booked for this person says.

    A join at `when` does if a stretch covers it (open, or closed after it). A leave does only if a stretch was
    already closed at or after it: an open stretch that began before it is the one the leave closes (that was
    skipped as a repeat, so a leave that came after its join, Graph's own order, was never booked)."""
    rows = MeetingAttendance.objects.filter(meeting=meeting, participant_key=key[:255])
    if left:
        return rows.filter(left_at__gte=when).filter(Q(joined_at__isnull=True) | Q(joined_at__lte=when)).exists()
    return rows.filter(joined_at__lte=when).filter(Q(left_at__isnull=True) | Q(left_at__gte=when)).exists() or (
        rows.filter(left_at=when).exists()
    )


def call_event_apply(*, meeting, resource):
    """A decrypted meetingCallEvents notification: callStarted / callEnded move the meeting with the event's
    own time; rosterUpdated books joins and leaves keyed by the participant's Graph identity id. Roster updates
    repeat people already present, and deliveries come twice or out of order: a join or leave inside a stretch
    already booked changes nothing, a leave before its join waits in a row its join fills."""
    from ..tasks import teams_attendance_task

    kind, when = resource.get("eventType"), _instant(resource.get("eventDateTime"))
    if when is None:
        return None
    if kind == "callStarted":
        lifecycle.meeting_moved(meeting=meeting, status=Meeting.Status.STARTED, occurred_at=when, when=when)
    elif kind == "callEnded":
        lifecycle.meeting_moved(meeting=meeting, status=Meeting.Status.ENDED, occurred_at=when, when=when)
        # The attendance report (delegated) has the whole story once the call is over.
        enqueue_on_commit(teams_attendance_task, meeting.pk)
    elif kind == "rosterUpdated":
        for entry in resource.get("participants@delta") or []:
            key, name = _participant(entry)
            left = bool(entry.get("removedState"))
            if not key or entry.get("isInLobby") or _already_booked(meeting, key, when, left=left):
                continue  # waiting in the lobby is not attending; a repeat is not a new stretch
            lifecycle.attendance_record(
                meeting=meeting, key=key, name=name, joined_at=None if left else when, left_at=when if left else None
            )
    else:
        return None
    return kind
