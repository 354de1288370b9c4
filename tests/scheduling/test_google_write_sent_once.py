"""A Google Calendar or Meet write whose answer is lost (connection dropped) reaches Google once, and is logged failed.

httplib2 resends a request whose status line never arrives "regardless of the number of RETRIES set". Google had
already applied the insert, so the resend made a second event (with a second set of invitations) inside one
gateway attempt, and the call log showed one successful call. The hub's transport (integrations.google_http)
sends a write once: the dropped connection is the attempt's error. The client's retry of a calendar event or
Meet meeting create under the same Idempotency-Key then finds the event the lost attempt made (the same
client-chosen event id, 409 duplicate) instead of making another. Driven through the API against the existing fakes served on a real
socket (google_wire), so httplib2's own connection handling runs.
"""

import re

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
    assert "id" not in _inserts(calendar_wire)[0]["body"]  # without an Idempotency-Key Google chooses the id
    assert CalendarEvent.objects.get().title == "Standup"
    assert _calls("google_calendar", "event.insert") == [(ProviderCall.Outcome.OK, None)]


def test_a_create_retried_under_its_idempotency_key_after_a_lost_answer_is_the_event_already_made(
    user_client, calendar_wire
):
    cid = calendar_id(user_client)
    calendar_wire.drop.append("POST")
    first = user_client.post(events_url(cid), weekly(recurrence=[]), format="json", HTTP_IDEMPOTENCY_KEY="standup-1")
    assert first.status_code == 502, first.json()

    retry = user_client.post(events_url(cid), weekly(recurrence=[]), format="json", HTTP_IDEMPOTENCY_KEY="standup-1")

    assert retry.status_code == 201, retry.json()
    [(eid, event)] = calendar_wire.fake.events["ada@example.com"].items()
    assert re.fullmatch(r"[0-9a-v]{5,1024}", eid)  # Google's rule for a client-chosen id (base32hex)
    assert [r["body"]["id"] for r in _inserts(calendar_wire)] == [eid, eid]
    assert retry.json()["event_id"] == eid and retry.json()["title"] == "Standup"
    assert CalendarEvent.objects.get().external_id == eid
    assert _calls("google_calendar", "event.insert") == [
        (ProviderCall.Outcome.ERROR, True),  # the lost answer
        (ProviderCall.Outcome.ERROR, False),  # 409 duplicate: the id is taken by that event
    ]
    assert _calls("google_calendar", "event.get") == [(ProviderCall.Outcome.OK, None)]


def test_another_event_under_a_reused_key_is_another_create(user_client, calendar_wire):
    """A 5xx leaves no idempotency record, so the key may come back with another event: never answered with the
    first one's."""
    cid = calendar_id(user_client)
    calendar_wire.drop.append("POST")
    first = user_client.post(events_url(cid), weekly(recurrence=[]), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 502

    other = user_client.post(
        events_url(cid), weekly(recurrence=[], title="Retro"), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert other.status_code == 201, other.json()
    assert other.json()["title"] == "Retro"
    titles = sorted(e["summary"] for e in calendar_wire.fake.events["ada@example.com"].values())
    assert titles == ["Retro", "Standup"]


def test_a_retry_after_the_event_was_deleted_at_google_says_so_and_makes_nothing(user_client, calendar_wire):
    cid = calendar_id(user_client)
    calendar_wire.drop.append("POST")
    user_client.post(events_url(cid), weekly(recurrence=[]), format="json", HTTP_IDEMPOTENCY_KEY="standup-2")
    [eid] = calendar_wire.fake.events["ada@example.com"]
    calendar_wire.fake.remove("ada@example.com", eid)  # someone deleted it in Google Calendar meanwhile

    retry = user_client.post(events_url(cid), weekly(recurrence=[]), format="json", HTTP_IDEMPOTENCY_KEY="standup-2")

    assert retry.status_code == 409 and retry.json()["error"] == "event_deleted", retry.json()
    assert list(calendar_wire.fake.events["ada@example.com"]) == [eid]
    assert not CalendarEvent.objects.exists()


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


def test_a_meet_create_retried_under_its_idempotency_key_after_a_lost_answer_is_the_meeting_already_made(
    user_client, meet_wire
):
    meet_wire.drop.append("POST")
    request = body("google_meet")
    first = user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="review-1")
    assert first.status_code == 502, first.json()

    retry = user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="review-1")

    assert retry.status_code == 201, retry.json()
    [(eid, event)] = meet_wire.fake.events.items()
    assert re.fullmatch(r"[0-9a-v]{5,1024}", eid)
    assert [r["body"]["id"] for r in _inserts(meet_wire)] == [eid, eid]
    code = event["conferenceData"]["conferenceId"]
    assert retry.json()["meeting_id"] == eid and retry.json()["join_url"] == f"https://meet.google.com/{code}"
    assert Meeting.objects.get().external_id == eid
    assert _calls("google_meet", "event.insert") == [
        (ProviderCall.Outcome.ERROR, True),
        (ProviderCall.Outcome.ERROR, False),
    ]
    assert _calls("google_meet", "event.get") == [(ProviderCall.Outcome.OK, None)]


def test_a_meet_retry_after_the_meeting_was_deleted_at_google_says_so_and_makes_nothing(user_client, meet_wire):
    meet_wire.drop.append("POST")
    request = body("google_meet")
    user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="review-2")
    [event] = meet_wire.fake.events.values()
    event["status"] = "cancelled"  # deleted in Google Calendar meanwhile (Google keeps it, cancelled)

    retry = user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="review-2")

    assert retry.status_code == 409 and retry.json()["error"] == "meeting_deleted", retry.json()
    assert len(meet_wire.fake.events) == 1 and not Meeting.objects.exists()


def test_a_finished_meet_create_retried_after_its_key_expired_is_the_same_meeting(user_client, meet_wire):
    """Past the API's 24 h record of the key, Google answered the same event id with the event the hub already had
    a row for: a second row for it was a unique-constraint 500. The finished create is recorded and answers."""
    from integrations.models import IdempotencyRecord

    request = body("google_meet")
    first = user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="review-3")
    assert first.status_code == 201, first.json()
    IdempotencyRecord.objects.all().delete()

    again = user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="review-3")

    assert again.status_code == 201, again.json()
    assert again.json()["id"] == first.json()["id"] and Meeting.objects.count() == 1
    assert len(_inserts(meet_wire)) == 1
