"""Webex meeting creates under an Idempotency-Key: a retry after a lost answer is the meeting already made.

Webex takes no idempotency key and no client-chosen id. A create under a key now carries its create id
(calendars.create_id over owner, connection, key and the whole request) as an integration tag (`integrationTags`),
and the hub notes before the POST that an attempt is going out (scheduling.MeetingCreate). A retry that finds an
attempt whose outcome is unknown (a timeout, a reset, a 5xx) asks List Meetings for that tag first and adopts
what it finds; finding nothing, it creates. Without that, the retry made a second Webex meeting and mailed every
invitee a second invitation. Driven through the API against FakeWebex at httpx's transport.
"""

import json

import httpx
import pytest

from integrations.models import IdempotencyRecord
from scheduling.models import Meeting

from .helpers import URL, body

pytestmark = pytest.mark.django_db
PEOPLE = [{"email": "ana@example.com", "name": "Ana Lima"}, {"email": "bo@example.com"}]


def post(user_client, request, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return user_client.post(URL, request, format="json", **headers)


def creates(webex):
    """The bodies of the meeting POSTs that reached Webex."""
    return [json.loads(r.content) for r in webex.requests if r.method == "POST" and r.url.path == "/v1/meetings"]


def listings(webex):
    return [r.url.params for r in webex.requests if r.method == "GET" and r.url.path == "/v1/meetings"]


@pytest.mark.parametrize(
    "lost",
    [httpx.ReadTimeout("The read operation timed out"), (502, {"message": "Bad Gateway", "errors": []})],
    ids=["timeout", "502"],
)
def test_a_create_retried_under_its_key_after_a_lost_answer_is_the_meeting_already_made(
    user_client, webex_conn, webex_api, lost
):
    request = body("webex", participants=PEOPLE)
    webex_api.lose_next.append(lost)
    first = post(user_client, request, key="webex-1")
    assert first.status_code >= 500, first.json()  # no idempotency record: the client retries
    assert len(webex_api.meetings) == 1 and not Meeting.objects.exists()  # Webex made it, and mailed the invitees

    retry = post(user_client, request, key="webex-1")

    assert retry.status_code == 201, retry.json()
    [(mid, made)] = webex_api.meetings.items()
    assert retry.json()["meeting_id"] == mid and retry.json()["join_url"] == made["webLink"]
    assert retry.json()["passcode"] == made["password"] and Meeting.objects.get().external_id == mid
    assert webex_api.invitations == [(mid, "ana@example.com"), (mid, "bo@example.com")]  # one invitation each
    [sent] = creates(webex_api)  # the retry posted nothing: it found the meeting
    [tag] = sent["integrationTags"]
    assert len(tag) == 52 and made["integrationTags"] == [tag]
    [listed] = listings(webex_api)
    assert listed["integrationTag"] == tag and listed["meetingType"] == "meetingSeries"
    assert listed["from"] < request["start_time"].replace("+00:00", "Z") < listed["to"]


def test_a_first_attempt_that_never_reached_webex_is_made_once_by_the_retry(user_client, webex_conn, webex_api):
    request = body("webex", participants=PEOPLE)
    webex_api.fail_next.append(httpx.ConnectError("connection refused"))
    assert post(user_client, request, key="webex-2").status_code == 502
    assert not webex_api.meetings

    retry = post(user_client, request, key="webex-2")

    assert retry.status_code == 201, retry.json()
    [(mid, made)] = webex_api.meetings.items()
    assert retry.json()["meeting_id"] == mid and len(webex_api.invitations) == 2
    first, second = creates(webex_api)  # both attempts' POSTs, the first refused at the connection
    assert first["integrationTags"] == second["integrationTags"] == made["integrationTags"]
    assert len(listings(webex_api)) == 1  # a refused connection may be a lost answer: looked up, nothing found


@pytest.mark.parametrize(
    "other",
    [{"topic": "Retro"}, {"participants": PEOPLE[:1]}],
    ids=["another topic", "other participants"],
)
def test_another_meeting_under_a_reused_key_is_another_create(user_client, webex_conn, webex_api, other):
    """A 5xx keeps no idempotency record, so the key may come back with another meeting: never answered with the
    first one's (nor found by its tag)."""
    request = body("webex", participants=PEOPLE)
    webex_api.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request, key="webex-3").status_code == 504
    [lost_id] = webex_api.meetings

    again = post(user_client, {**request, **other}, key="webex-3")

    assert again.status_code == 201, again.json()
    assert len(webex_api.meetings) == 2 and again.json()["meeting_id"] != lost_id
    first, second = (c["integrationTags"] for c in creates(webex_api))
    assert first != second and not listings(webex_api)


def test_a_create_without_a_key_sends_no_tag_and_looks_nothing_up(user_client, webex_conn, webex_api):
    """Without a key nothing marks a retry as one: each create is a new meeting, as before."""
    request = body("webex")
    webex_api.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request).status_code == 504

    again = post(user_client, request)

    assert again.status_code == 201, again.json()
    assert len(webex_api.meetings) == 2 and not listings(webex_api)
    assert all("integrationTags" not in c for c in creates(webex_api))


def test_a_clean_refusal_leaves_nothing_to_look_up(user_client, webex_conn, webex_api):
    """Webex's 4xx made nothing: the retry posts at once, under the same tag."""
    request = body("webex")
    webex_api.fail_next.append((400, {"message": "Invalid start time.", "errors": []}, {}))
    assert post(user_client, request, key="webex-4").status_code == 502

    retry = post(user_client, request, key="webex-4")

    assert retry.status_code == 201, retry.json()
    first, second = creates(webex_api)
    assert first["integrationTags"] == second["integrationTags"] and not listings(webex_api)
    assert len(webex_api.meetings) == 1


def test_a_finished_create_asked_again_after_its_idempotency_record_is_gone_is_the_same_meeting(
    user_client, webex_conn, webex_api
):
    request = body("webex", participants=PEOPLE)
    first = post(user_client, request, key="webex-5")
    assert first.status_code == 201, first.json()
    IdempotencyRecord.objects.all().delete()

    again = post(user_client, request, key="webex-5")

    assert again.status_code == 201, again.json()
    assert again.json()["id"] == first.json()["id"] and len(webex_api.meetings) == 1
    assert len(creates(webex_api)) == 1 and len(webex_api.invitations) == 2
