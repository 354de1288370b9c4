"""A Google Calendar or Meet write whose answer is lost (connection dropped) reaches Google once, and is logged failed.

httplib2 resends a request whose status line never arrives "regardless of the number of RETRIES set". Google had
already applied the insert, so the resend made a second event (with a second set of invitations) inside one
gateway attempt, and the call log showed one successful call. The hub's transport (integrations.google_http)
sends a write once: the dropped connection is the attempt's error. Driven through the API against the existing
fakes served on a real socket (google_wire), so httplib2's own connection handling runs.
"""

import pytest

from integrations.models import ProviderCall
from scheduling.models import CalendarEvent, Meeting

from .calendar_fakes import FakeGoogleCalendar
from .conftest import CALENDAR_SCOPES, _connection
from .fakes import FakeGoogle
from .google_wire import GoogleOnTheWire
from .helpers import URL, body
from .test_calendar_google import calendar_id, events_url, weekly

pytestmark = pytest.mark.django_db
MEET_SCOPES = ["https://www.googleapis.com/auth/calendar.events", "openid"]


def _serve(settings, fake, provider):
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, provider: {"requests": {"rate": 1000, "burst": 1000}}}
    wire = GoogleOnTheWire(fake)
    settings.GOOGLE_CALENDAR_API_BASE = wire.base + "/calendar/v3"
    return wire


@pytest.fixture
def calendar_wire(settings, user):
    fake = FakeGoogleCalendar()
    wire = _serve(settings, fake, "google_calendar")
    _connection(user, "google_oauth", "ada@example.com", fake.token, CALENDAR_SCOPES, capabilities=("calendar",))
    yield wire
    wire.stop()


@pytest.fixture
def meet_wire(settings, user):
    fake = FakeGoogle()
    wire = _serve(settings, fake, "google_meet")
    _connection(user, "google_oauth", "ada@example.com", fake.token, MEET_SCOPES)
    yield wire
    wire.stop()


def _inserts(wire):
    return [r for r in wire.fake.requests if r["method"] == "POST"]


def _calls(provider, operation):
    return list(
        ProviderCall.objects.filter(provider=provider, operation=operation)
        .order_by("pk")
        .values_list("outcome", "retryable")
    )


def test_an_event_insert_whose_answer_is_lost_is_not_sent_again(user_client, calendar_wire):
    cid = calendar_id(user_client)
    calendar_wire.drop.append("POST")

    response = user_client.post(events_url(cid), weekly(recurrence=[]), format="json")

    assert calendar_wire.dropped == [("POST", "/calendar/v3/calendars/ada@example.com/events")]
    assert len(_inserts(calendar_wire)) == 1
    assert len(calendar_wire.fake.events["ada@example.com"]) == 1  # one event at Google, one set of invitations
    assert response.status_code == 502 and response.json()["error"] == "provider_unavailable", response.json()
    assert not CalendarEvent.objects.exists()
    # The attempt is in the call log as what it was: failed, and worth retrying.
    assert _calls("google_calendar", "event.insert") == [(ProviderCall.Outcome.ERROR, True)]


def test_an_event_insert_that_is_answered_is_unchanged(user_client, calendar_wire):
    """The control: over the same socket, an answered insert makes one event, stored, and logs one ok call."""
    cid = calendar_id(user_client)

    response = user_client.post(events_url(cid), weekly(recurrence=[]), format="json")

    assert response.status_code == 201, response.json()
    assert len(_inserts(calendar_wire)) == 1 and len(calendar_wire.fake.events["ada@example.com"]) == 1
    assert CalendarEvent.objects.get().title == "Standup"
    assert _calls("google_calendar", "event.insert") == [(ProviderCall.Outcome.OK, None)]


def test_a_read_whose_answer_is_lost_is_still_asked_again(user_client, calendar_wire):
    """Reads keep httplib2's stale-connection retry: asking twice changes nothing at Google."""
    calendar_wire.drop.append("GET")

    response = user_client.get("/api/v1/calendars/")

    assert response.status_code == 200 and len(response.json()["results"]) == 2
    assert [r["method"] for r in calendar_wire.fake.requests] == ["GET", "GET"]
    assert _calls("google_calendar", "calendarList.list") == [(ProviderCall.Outcome.OK, None)]


def test_a_meet_meeting_whose_insert_answer_is_lost_is_not_created_twice(user_client, meet_wire):
    meet_wire.drop.append("POST")

    response = user_client.post(URL, body("google_meet"), format="json")

    assert meet_wire.dropped == [("POST", "/calendar/v3/calendars/primary/events")]
    assert len(_inserts(meet_wire)) == 1
    assert len(meet_wire.fake.events) == 1  # one event, one Meet conference, one set of invitations
    assert response.status_code == 502 and response.json()["error"] == "provider_unavailable", response.json()
    assert not Meeting.objects.exists()
    assert _calls("google_meet", "event.insert") == [(ProviderCall.Outcome.ERROR, True)]
