"""A Teams meeting create retried under its Idempotency-Key after the meeting changed on one side or the other.

The API replays a finished create's answer for 24 h (integrations.api.idempotency). Past that, or after a
failure that came once the meeting's row was saved, the retry reached Graph again: the same transactionId was
answered with the event the hub already had a row for (a second row for it: a unique-constraint 500), and a
meeting cancelled through the hub was made again. A finished create is now recorded (MeetingCreate, as Zoom's
and Webex's are) and its retry answered from it. A meeting deleted in Outlook before any attempt came back is
another matter: the hub never had it, and the retry makes the meeting, as Zoom's does (Graph does not say what a
transactionId whose event is gone does; FakeGraph makes a new event).
"""

import httpx
import pytest

from integrations.models import IdempotencyRecord
from scheduling.models import Meeting

from .fakes import GRAPH
from .helpers import URL, body

pytestmark = pytest.mark.django_db
PEOPLE = [{"email": "ana@contoso.com", "name": "Ana Lima"}]


def post(user_client, request, key):
    return user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY=key)


def event_posts(graph):
    return [r for r in graph.requests if r.method == "POST" and r.url.path == "/v1.0/me/events"]


def test_a_finished_create_retried_after_its_key_expired_is_the_same_meeting(user_client, teams_conn, graph):
    request = body("teams", participants=PEOPLE)
    first = post(user_client, request, "teams-1")
    assert first.status_code == 201, first.json()
    IdempotencyRecord.objects.all().delete()  # 24 h later
    calls = len(graph.requests)

    again = post(user_client, request, "teams-1")

    assert again.status_code == 201, again.json()
    assert again.json()["id"] == first.json()["id"] and again.json()["meeting_id"] == first.json()["meeting_id"]
    assert Meeting.objects.count() == 1 and len(graph.events) == 1 and len(graph.requests) == calls


def test_a_finished_create_whose_meeting_was_cancelled_asks_for_a_new_key(user_client, teams_conn, graph):
    request = body("teams", participants=PEOPLE)
    made = post(user_client, request, "teams-2").json()
    assert user_client.delete(f"{URL}{made['id']}/").status_code == 200
    IdempotencyRecord.objects.all().delete()

    again = post(user_client, request, "teams-2")

    assert again.status_code == 409 and again.json()["error"] == "meeting_deleted", again.json()
    assert "new Idempotency-Key" in again.json()["detail"]
    assert not graph.events and len(event_posts(graph)) == 1 and Meeting.objects.count() == 1


def test_a_meeting_deleted_in_outlook_before_any_attempt_came_back_is_made_again(user_client, teams_conn, graph):
    """The first attempt's answer was lost, so the hub never had the meeting; the organizer cancelled it in Outlook.
    The retry is the client asking for the meeting it never got: one meeting that exists, and one row for it."""
    request = body("teams", participants=PEOPLE)
    graph.lose_next.append("POST")
    assert post(user_client, request, "teams-3").status_code == 504
    [lost] = graph.events
    auth = {"Authorization": f"Bearer {graph.token}"}
    assert httpx.post(f"{GRAPH}/me/events/{lost}/cancel", json={"comment": ""}, headers=auth).status_code == 202

    retry = post(user_client, request, "teams-3")

    assert retry.status_code == 201, retry.json()
    [made] = graph.events
    assert made != lost and retry.json()["meeting_id"] == made
    assert Meeting.objects.get().external_id == made
