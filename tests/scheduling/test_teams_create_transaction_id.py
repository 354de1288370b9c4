"""Teams meeting creates under an Idempotency-Key: a retry after a lost answer is the meeting already made.

A Teams meeting is a Graph event (POST /me/events, isOnlineMeeting). The create now carries a transactionId
derived from user, key, event and settings (calendars.create_id, as Microsoft calendar events), which Graph keeps
"to avoid redundant POST operations in case of client retries to create the same event": the same POST again is
answered 201 with the event the first one made. A timeout leaves no idempotency record (a 5xx), so without it the
client's retry made a second Teams meeting with a second set of invitations. Driven through the API against
FakeGraph at httpx's transport; `lose_next` applies a request and loses its answer.
"""

import json

import httpx
import pytest

from integrations.models import ProviderCall
from scheduling.models import Meeting

from .fakes import GRAPH
from .helpers import URL, body

pytestmark = pytest.mark.django_db
PEOPLE = [{"email": "ana@contoso.com", "name": "Ana Lima"}]


def post(user_client, request, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return user_client.post(URL, request, format="json", **headers)


def creates(graph):
    """The bodies of the event POSTs that reached Graph."""
    return [json.loads(r.content) for r in graph.requests if r.method == "POST" and r.url.path == "/v1.0/me/events"]


def calls(operation):
    return list(
        ProviderCall.objects.filter(provider="teams", operation=operation)
        .order_by("pk")
        .values_list("outcome", "retryable")
    )


def test_a_create_retried_under_its_key_after_a_lost_answer_is_the_meeting_already_made(user_client, teams_conn, graph):
    request = body("teams", participants=PEOPLE)
    graph.lose_next.append("POST")
    first = post(user_client, request, key="review-1")
    assert first.status_code == 504, first.json()  # a timeout: no idempotency record, the client retries
    assert len(graph.events) == 1 and not Meeting.objects.exists()  # Graph made the meeting all the same

    retry = post(user_client, request, key="review-1")

    assert retry.status_code == 201, retry.json()
    [(eid, event)] = graph.events.items()
    [online] = graph.online.values()  # one Teams meeting, one set of invitations
    tid = event["transactionId"]
    assert tid and [c["transactionId"] for c in creates(graph)] == [tid, tid]
    assert retry.json()["meeting_id"] == eid and retry.json()["join_url"] == online["joinWebUrl"]
    assert retry.json()["passcode"] == online["joinMeetingIdSettings"]["passcode"]
    assert Meeting.objects.get().external_id == eid
    assert calls("event.create") == [(ProviderCall.Outcome.TIMEOUT, True), (ProviderCall.Outcome.OK, None)]


def test_a_create_that_failed_after_graph_made_the_event_is_finished_on_that_event(user_client, teams_conn, graph):
    """The event was made but the onlineMeeting lookup's answer was lost: the retry finds the same event and then
    does what the failed attempt never got to, the lookup and the lobby setting."""
    request = body("teams", settings={"waiting_room": True})
    graph.lose_next.append("GET")
    first = post(user_client, request, key="review-2")
    assert first.status_code == 504, first.json()
    [online] = graph.online.values()
    assert online["lobbyBypassSettings"]["scope"] == "organization"  # not set yet

    retry = post(user_client, request, key="review-2")

    assert retry.status_code == 201, retry.json()
    [eid] = graph.events
    assert len(creates(graph)) == 2 and len(graph.online) == 1
    assert online["lobbyBypassSettings"] == {"scope": "organizer", "isDialInBypassEnabled": False}
    assert retry.json()["meeting_id"] == eid and Meeting.objects.get().external_id == eid


@pytest.mark.parametrize(
    "other",
    [{"topic": "Retro"}, {"settings": {"waiting_room": True}}],
    ids=["another topic", "other settings"],
)
def test_another_meeting_under_a_reused_key_is_another_create(user_client, teams_conn, graph, other):
    """A 5xx keeps no idempotency record, so the key may come back with another meeting: never answered with the
    first one's. The settings are part of the create, though they reach Graph after the event."""
    request = body("teams")
    graph.lose_next.append("POST")
    assert post(user_client, request, key="k-1").status_code == 504

    again = post(user_client, {**request, **other}, key="k-1")

    assert again.status_code == 201, again.json()
    assert len(graph.events) == 2 and len(graph.online) == 2
    first_tid, other_tid = (c["transactionId"] for c in creates(graph))
    assert first_tid != other_tid


def test_the_same_meeting_under_another_key_is_another_create(user_client, teams_conn, graph):
    request = body("teams")
    assert post(user_client, request, key="k-1").status_code == 201
    assert post(user_client, request, key="k-2").status_code == 201
    assert len(graph.events) == 2 and Meeting.objects.count() == 2


def test_a_create_without_a_key_sends_no_transaction_id_and_is_unchanged(user_client, teams_conn, graph):
    """Without a key nothing marks a retry as one: each create is a new meeting, as before."""
    request = body("teams")
    graph.lose_next.append("POST")
    assert post(user_client, request).status_code == 504

    again = post(user_client, request)

    assert again.status_code == 201, again.json()
    assert len(graph.events) == 2 and len(graph.online) == 2
    assert all("transactionId" not in c for c in creates(graph))
    assert "transactionId" not in Meeting.objects.get().raw["event"]  # Graph shows it only when an app set it


def test_a_transaction_id_graph_says_made_a_different_event_asks_for_a_new_key(user_client, teams_conn, graph):
    message = (
        "Your request can't be completed. The TransactionId specified in the request has already been used to "
        "create a different event."
    )
    graph.fail_next.append((400, {"error": {"code": "ErrorDuplicateTransactionId", "message": message}}, {}))

    response = post(user_client, body("teams"), key="review-3")

    assert response.status_code == 409 and response.json()["error"] == "meeting_conflict", response.json()
    assert "new Idempotency-Key" in response.json()["detail"]
    assert not Meeting.objects.exists() and not graph.events


def test_without_a_key_that_refusal_stays_a_provider_error(user_client, teams_conn, graph):
    graph.fail_next.append((400, {"error": {"code": "ErrorDuplicateTransactionId", "message": "used"}}, {}))

    response = post(user_client, body("teams"))

    assert (response.status_code, response.json()["error"]) == (502, "provider_rejected"), response.json()


def test_the_teams_fake_plays_graphs_transaction_id_rules(user_client, teams_conn, graph):
    """FakeGraph holds Graph's rules the adapter relies on, shared with FakeGraphCalendar: the same POST again is
    the event it made, and the id belongs to that event."""
    assert post(user_client, body("teams"), key="review-4").status_code == 201
    [made] = creates(graph)
    auth = {"Authorization": f"Bearer {graph.token}"}

    same = httpx.post(f"{GRAPH}/me/events", json=made, headers=auth)
    other = httpx.post(f"{GRAPH}/me/events", json={**made, "subject": "Something else"}, headers=auth)

    assert same.status_code == 201 and same.json()["id"] == Meeting.objects.get().external_id
    assert other.status_code == 400 and other.json()["error"]["code"] == "ErrorDuplicateTransactionId"
    assert len(graph.events) == 1
