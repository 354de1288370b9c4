"""Meeting <-> calendar event consistency (issue 19 point 6): the calendar sync's signal moves meetings."""

import datetime as dt

import pytest

from scheduling.models import Meeting
from scheduling.signals import calendar_event_changed

from ..factories import UserFactory
from .conftest import _connection
from .helpers import URL, body

pytestmark = pytest.mark.django_db


@pytest.fixture
def calendar_conn(user, settings):
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    scopes = ["https://www.googleapis.com/auth/calendar.events", "https://www.googleapis.com/auth/calendar.readonly"]
    return _connection(user, "google_oauth", "ada@example.com", "ya29.cal", scopes, capabilities=("calendar",))


def moved(meeting, *, connection_id, event_id, days=10, minutes=60, **extra):
    start = dt.datetime.fromisoformat(meeting["start_time"]) + dt.timedelta(days=days)
    calendar_event_changed.send(
        sender=None,
        connection_id=connection_id,
        event_id=event_id,
        start=start,
        end=start + dt.timedelta(minutes=minutes),
        **extra,
    )
    return start


def test_moving_a_zoom_meetings_calendar_event_reschedules_the_meeting_on_zoom(user_client, zoom, calendar_conn):
    ref = {"connection": calendar_conn.pk, "event_id": "evt-weekly"}
    meeting = user_client.post(URL, body("zoom", calendar_event=ref), format="json").json()
    assert meeting["calendar_event"] == ref
    start = moved(meeting, connection_id=calendar_conn.pk, event_id="evt-weekly", minutes=60)
    row = Meeting.objects.get(pk=meeting["id"])
    assert row.start_time == start and row.duration_minutes == 60
    sent = zoom.meetings[meeting["meeting_id"]]
    assert sent["start_time"] == start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") and sent["duration"] == 60


def test_a_duplicate_or_the_hubs_own_echo_changes_nothing_at_zoom(user_client, zoom, calendar_conn):
    ref = {"connection": calendar_conn.pk, "event_id": "evt-1"}
    meeting = user_client.post(URL, body("zoom", calendar_event=ref), format="json").json()
    moved(meeting, connection_id=calendar_conn.pk, event_id="evt-1")
    patches = len([r for r in zoom.requests if r.method == "PATCH"])
    moved(meeting, connection_id=calendar_conn.pk, event_id="evt-1")  # the same notification again
    moved(meeting, connection_id=calendar_conn.pk, event_id="evt-1", days=20, origin="hub")
    assert len([r for r in zoom.requests if r.method == "PATCH"]) == patches == 1


def test_cancelling_the_calendar_event_cancels_the_zoom_meeting(user_client, zoom, calendar_conn):
    ref = {"connection": calendar_conn.pk, "event_id": "evt-2"}
    meeting = user_client.post(URL, body("zoom", calendar_event=ref), format="json").json()
    calendar_event_changed.send(sender=None, connection_id=calendar_conn.pk, event_id="evt-2", cancelled=True)
    assert Meeting.objects.get(pk=meeting["id"]).status == "cancelled" and not zoom.meetings


def test_a_move_into_the_past_leaves_the_meeting_alone(user_client, zoom, calendar_conn):
    ref = {"connection": calendar_conn.pk, "event_id": "evt-3"}
    meeting = user_client.post(URL, body("zoom", calendar_event=ref), format="json").json()
    moved(meeting, connection_id=calendar_conn.pk, event_id="evt-3", days=-400)
    assert Meeting.objects.get(pk=meeting["id"]).start_time.isoformat() == meeting["start_time"].replace("Z", "+00:00")


def test_a_meet_meeting_is_its_event_so_only_the_row_follows(user_client, meet_conn, google):
    meeting = user_client.post(URL, body("google_meet"), format="json").json()
    assert meeting["calendar_event"] == {"connection": meet_conn.pk, "event_id": meeting["meeting_id"]}
    calls = len(google.requests)
    start = moved(meeting, connection_id=meet_conn.pk, event_id=meeting["meeting_id"], minutes=15)
    row = Meeting.objects.get(pk=meeting["id"])
    assert row.start_time == start and row.duration_minutes == 15 and len(google.requests) == calls
    calendar_event_changed.send(sender=None, connection_id=meet_conn.pk, event_id=meeting["meeting_id"], cancelled=True)
    assert Meeting.objects.get(pk=meeting["id"]).status == "cancelled" and len(google.requests) == calls


def test_attaching_needs_your_own_calendar_connection(user_client, client_for, zoom, calendar_conn):
    ref = {"connection": calendar_conn.pk, "event_id": "evt-4"}
    response = client_for(UserFactory()).post(URL, body("zoom", calendar_event=ref), format="json")
    assert response.status_code == 404 and not zoom.meetings
    missing = user_client.post(URL, body("zoom", calendar_event={"connection": calendar_conn.pk}), format="json")
    assert missing.status_code == 400 and "event_id" in str(missing.json())
