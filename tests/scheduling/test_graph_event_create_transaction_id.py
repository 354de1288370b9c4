"""Microsoft calendar event creates under an Idempotency-Key: a retry after a lost answer is the event already made.

The create carries a transactionId derived from user, calendar, key and event (calendars.create_id, as Google's
client-chosen id), which Graph keeps "to avoid redundant POST operations in case of client retries to create the
same event" (event resource): the same POST again is answered with the event the first one made. A timeout leaves
no idempotency record (a 5xx), so without it the client's retry made a second event with a second set of
invitations. Driven through the API against FakeGraphCalendar at httpx's transport; `lose_next` applies the
create and loses its answer.
"""

import json

import httpx
import pytest

from integrations.models import ProviderCall
from scheduling.models import Calendar, CalendarEvent

from .calendar_fakes import GRAPH

pytestmark = pytest.mark.django_db
CALS = "/api/v1/calendars/"


@pytest.fixture
def cal(user_client, mscal_conn, mscal):
    listed = user_client.get(CALS).json()["results"]
    return Calendar.objects.get(pk=listed[0]["id"])


def url(cal):
    return f"{CALS}{cal.pk}/events/"


def planning(**fields):
    return {
        "title": "Planning",
        "start": "2026-02-23T09:00:00",
        "end": "2026-02-23T10:00:00",
        "time_zone": "America/New_York",
        "attendees": [{"email": "bo@contoso.com"}],
        **fields,
    }


def creates(mscal):
    """The bodies of the event POSTs that reached Graph."""
    return [json.loads(r.content) for r in mscal.requests if r.method == "POST" and r.url.path.endswith("/events")]


def create_calls():
    return list(
        ProviderCall.objects.filter(provider="microsoft_calendar", operation="event.create")
        .order_by("pk")
        .values_list("outcome", "retryable")
    )


def post(user_client, cal, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return user_client.post(url(cal), body, format="json", **headers)


def test_a_create_retried_under_its_key_after_a_lost_answer_is_the_event_already_made(user_client, cal, mscal):
    mscal.lose_next.append("POST")
    first = post(user_client, cal, planning(), key="planning-1")
    assert first.status_code == 504, first.json()  # a timeout: no idempotency record, the client retries
    assert len(mscal.events) == 1  # Graph made the event all the same

    retry = post(user_client, cal, planning(), key="planning-1")

    assert retry.status_code == 201, retry.json()
    [(eid, event)] = mscal.events.items()
    tid = event["transactionId"]
    assert tid and [c["transactionId"] for c in creates(mscal)] == [tid, tid]
    assert retry.json()["event_id"] == eid and retry.json()["title"] == "Planning"
    assert CalendarEvent.objects.get().external_id == eid
    assert create_calls() == [(ProviderCall.Outcome.TIMEOUT, True), (ProviderCall.Outcome.OK, None)]


def test_a_series_retried_after_a_lost_answer_gets_its_exdates_once(user_client, cal, mscal):
    """The lost attempt never deleted the excluded occurrence: the retry does, on the series already made."""
    lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260309T090000"]
    series = planning(start="2026-03-02T09:00:00", end="2026-03-02T09:15:00", time_zone="Europe/Berlin")
    mscal.lose_next.append("POST")
    assert post(user_client, cal, {**series, "recurrence": lines}, key="series-1").status_code == 504
    [eid] = mscal.events
    assert mscal.deleted_occurrences == set()

    retry = post(user_client, cal, {**series, "recurrence": lines}, key="series-1")

    assert retry.status_code == 201, retry.json()
    assert list(mscal.events) == [eid] and mscal.deleted_occurrences == {f"{eid}-occ-20260309"}
    assert retry.json()["event_id"] == eid and retry.json()["recurrence"] == lines


def test_another_event_under_a_reused_key_is_another_create(user_client, cal, mscal):
    """A 5xx keeps no idempotency record, so the key may come back with another event: never answered with the
    first one's."""
    mscal.lose_next.append("POST")
    assert post(user_client, cal, planning(), key="k-1").status_code == 504

    other = post(user_client, cal, planning(title="Retro"), key="k-1")

    assert other.status_code == 201, other.json()
    assert other.json()["title"] == "Retro"
    assert sorted(e["subject"] for e in mscal.events.values()) == ["Planning", "Retro"]
    first_tid, other_tid = (c["transactionId"] for c in creates(mscal))
    assert first_tid != other_tid


def test_the_same_event_under_another_key_is_another_create(user_client, cal, mscal):
    assert post(user_client, cal, planning(), key="k-1").status_code == 201
    assert post(user_client, cal, planning(), key="k-2").status_code == 201
    assert len(mscal.events) == 2


def test_a_create_without_a_key_sends_no_transaction_id_and_is_unchanged(user_client, cal, mscal):
    """Without a key nothing marks a retry as one: each create is a new event, as before."""
    mscal.lose_next.append("POST")
    assert post(user_client, cal, planning()).status_code == 504

    again = post(user_client, cal, planning())

    assert again.status_code == 201, again.json()
    assert len(mscal.events) == 2
    assert all("transactionId" not in c for c in creates(mscal))
    assert "transactionId" not in CalendarEvent.objects.get().raw  # Graph shows it only when an app set it


def test_a_transaction_id_graph_says_made_a_different_event_asks_for_a_new_key(user_client, cal, mscal):
    message = (
        "Your request can't be completed. The TransactionId specified in the request has already been used to "
        "create a different event."
    )
    mscal.fail_next.append((400, {"error": {"code": "ErrorDuplicateTransactionId", "message": message}}, {}))

    response = post(user_client, cal, planning(), key="planning-2")

    assert response.status_code == 409 and response.json()["error"] == "event_conflict", response.json()
    assert "new Idempotency-Key" in response.json()["detail"]
    assert not CalendarEvent.objects.exists() and not mscal.events


def test_the_fake_refuses_a_used_transaction_id_for_a_different_event(user_client, cal, mscal):
    """FakeGraphCalendar holds Graph's rule the adapter relies on: a transactionId belongs to the event it made."""
    assert post(user_client, cal, planning(), key="planning-3").status_code == 201
    [tid] = [c["transactionId"] for c in creates(mscal)]
    answer = httpx.post(
        f"{GRAPH}/me/calendars/AAMkCal1/events",
        json={"subject": "Something else", "transactionId": tid},
        headers={"Authorization": f"Bearer {mscal.token}"},
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "ErrorDuplicateTransactionId"
    assert len(mscal.events) == 1
