"""Zoom meeting creates under an Idempotency-Key: a retry after a lost answer is the meeting already made.

Zoom takes no idempotency key and no client-chosen id. A create under a key now carries its create id
(calendars.create_id over owner, key and the whole request) as a custom key (`settings.custom_keys`), and the hub
notes before the POST that an attempt is going out (scheduling.MeetingCreate). A retry that finds an attempt whose
outcome is unknown (a timeout, a reset, a 5xx: no idempotency record, the client retries) lists the host's
meetings around the start, reads those with the same topic and start, and adopts the one carrying its custom key;
finding none, it creates. Without that, the retry made a second Zoom meeting. Driven through the API against
FakeZoom at httpx's transport: `lose_next` applies a request and loses its answer.
"""

import json

import httpx
import pytest

from integrations.models import IdempotencyRecord
from scheduling.models import Meeting
from scheduling.providers import zoom as zoom_api

from .helpers import URL, body

pytestmark = pytest.mark.django_db
PEOPLE = [{"email": "ana@example.com", "name": "Ana Lima"}, {"email": "bo@example.com"}]
LOST = [
    httpx.ReadTimeout("The read operation timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    (502, {"code": 502, "message": "Bad Gateway"}),
]


def post(user_client, request, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return user_client.post(URL, request, format="json", **headers)


def creates(zoom):
    """The bodies of the meeting POSTs that reached Zoom."""
    return [
        json.loads(r.content) for r in zoom.requests if r.method == "POST" and r.url.path == "/v2/users/me/meetings"
    ]


def custom_keys(sent):
    return sent.get("settings", {}).get("custom_keys")


def listings(zoom):
    return [r.url.params for r in zoom.requests if r.method == "GET" and r.url.path == "/v2/users/me/meetings"]


def reads(zoom):
    return [r.url.path.rsplit("/", 1)[1] for r in zoom.requests if r.method == "GET" and "/v2/meetings/" in r.url.path]


@pytest.mark.parametrize("lost", LOST, ids=["timeout", "reset", "502"])
def test_a_create_retried_under_its_key_after_a_lost_answer_is_the_meeting_already_made(user_client, zoom, lost):
    request = body("zoom")
    zoom.lose_next.append(lost)
    first = post(user_client, request, key="zoom-1")
    assert first.status_code >= 500, first.json()  # no idempotency record: the client retries
    assert len(zoom.meetings) == 1 and not Meeting.objects.exists()  # Zoom made the meeting all the same

    retry = post(user_client, request, key="zoom-1")

    assert retry.status_code == 201, retry.json()
    [(mid, made)] = zoom.meetings.items()
    assert retry.json()["meeting_id"] == mid and retry.json()["join_url"] == made["join_url"]
    assert Meeting.objects.get().external_id == mid
    [sent] = creates(zoom)  # the retry posted nothing: it found the meeting
    [tag] = custom_keys(sent)
    assert tag["key"] == "integration_hub_create" and len(tag["value"]) == 52
    assert made["settings"]["custom_keys"] == [tag]
    [listed] = listings(zoom)
    assert listed["type"] == "scheduled" and listed["page_size"] == "300"
    assert listed["from"] < request["start_time"][:10] < listed["to"]


def test_a_first_attempt_that_never_reached_zoom_is_made_once_by_the_retry(user_client, zoom):
    request = body("zoom")
    zoom.fail_next.append(httpx.ConnectError("connection refused"))
    assert post(user_client, request, key="zoom-2").status_code == 502
    assert not zoom.meetings

    retry = post(user_client, request, key="zoom-2")

    assert retry.status_code == 201, retry.json()
    [(mid, made)] = zoom.meetings.items()
    assert retry.json()["meeting_id"] == mid and Meeting.objects.get().external_id == mid
    first, second = creates(zoom)  # both attempts' POSTs, the first refused at the connection
    assert custom_keys(first) == custom_keys(second) == made["settings"]["custom_keys"]
    assert len(listings(zoom)) == 1  # a refused connection may be a lost answer: looked up, nothing found


def test_a_meeting_of_the_same_topic_and_start_without_our_key_is_never_adopted(user_client, zoom):
    """A user's own meeting with the same title at the same time is not the hub's: read, and left alone."""
    request = body("zoom")
    theirs = zoom.add_meeting(topic=request["topic"], start_time=request["start_time"].replace("+00:00", "Z"))
    zoom.fail_next.append(httpx.ConnectError("connection refused"))
    assert post(user_client, request, key="zoom-3").status_code == 502

    retry = post(user_client, request, key="zoom-3")

    assert retry.status_code == 201, retry.json()
    ours = retry.json()["meeting_id"]
    assert ours != theirs and set(zoom.meetings) == {theirs, ours}
    assert reads(zoom) == [theirs]  # the candidate was read for its custom keys, then passed over
    assert "custom_keys" not in zoom.meetings[theirs]["settings"]


def test_the_retry_pages_past_a_look_alike_to_the_meeting_with_its_key(user_client, zoom):
    request = body("zoom")
    theirs = zoom.add_meeting(topic=request["topic"], start_time=request["start_time"].replace("+00:00", "Z"))
    zoom.page_limit = 1
    zoom.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request, key="zoom-4").status_code == 504

    retry = post(user_client, request, key="zoom-4")

    assert retry.status_code == 201, retry.json()
    [ours] = set(zoom.meetings) - {theirs}
    assert retry.json()["meeting_id"] == ours and len(creates(zoom)) == 1
    first_page, second_page = listings(zoom)
    assert "next_page_token" not in first_page and second_page["next_page_token"]
    assert reads(zoom) == [theirs, ours]


def test_more_look_alikes_than_the_hub_reads_refuse_the_retry_rather_than_risk_a_second(user_client, zoom, monkeypatch):
    """Past FIND_PAGES pages the hub cannot tell whether the lost attempt made the meeting: the client is told so."""
    monkeypatch.setattr(zoom_api, "FIND_PAGES", 1)
    request = body("zoom")
    zoom.add_meeting(topic=request["topic"], start_time=request["start_time"].replace("+00:00", "Z"))
    zoom.page_limit = 1
    zoom.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request, key="zoom-5").status_code == 504

    retry = post(user_client, request, key="zoom-5")

    assert retry.status_code == 409 and retry.json()["error"] == "create_outcome_unknown", retry.json()
    assert "new Idempotency-Key" in retry.json()["detail"]
    assert len(zoom.meetings) == 2 and len(creates(zoom)) == 1 and not Meeting.objects.exists()


@pytest.mark.parametrize(
    "other",
    [{"topic": "Retro"}, {"participants": PEOPLE}],
    ids=["another topic", "other participants"],
)
def test_another_meeting_under_a_reused_key_is_another_create(user_client, zoom, other):
    """A 5xx keeps no idempotency record, so the key may come back with another meeting: never answered with the
    first one's, and not looked up (nothing of this create can exist)."""
    request = body("zoom")
    zoom.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request, key="zoom-6").status_code == 504
    [lost_id] = zoom.meetings

    again = post(user_client, {**request, **other}, key="zoom-6")

    assert again.status_code == 201, again.json()
    assert len(zoom.meetings) == 2 and again.json()["meeting_id"] != lost_id
    first, second = (custom_keys(c)[0]["value"] for c in creates(zoom))
    assert first != second and not listings(zoom)


def test_a_create_without_a_key_sends_no_custom_key_and_looks_nothing_up(user_client, zoom):
    """Without a key nothing marks a retry as one: each create is a new meeting, as before."""
    request = body("zoom")
    zoom.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request).status_code == 504

    again = post(user_client, request)

    assert again.status_code == 201, again.json()
    assert len(zoom.meetings) == 2 and not listings(zoom)
    assert all(custom_keys(c) is None for c in creates(zoom))


def test_a_clean_refusal_leaves_nothing_to_look_up(user_client, zoom):
    """Zoom's 4xx made nothing: the retry posts at once, under the same custom key."""
    request = body("zoom")
    zoom.fail_next.append((400, {"code": 300, "message": "Invalid start_time"}, {}))
    assert post(user_client, request, key="zoom-7").status_code == 502

    retry = post(user_client, request, key="zoom-7")

    assert retry.status_code == 201, retry.json()
    first, second = creates(zoom)
    assert custom_keys(first) and custom_keys(first) == custom_keys(second)
    assert len(zoom.meetings) == 1 and not listings(zoom)


def test_a_finished_create_asked_again_after_its_idempotency_record_is_gone_is_the_same_meeting(user_client, zoom):
    """The API replays a finished create for IDEMPOTENCY_TTL_SECONDS; past that the same create is still the same
    meeting, not a second one (and nothing is asked of Zoom)."""
    request = body("zoom")
    first = post(user_client, request, key="zoom-8")
    assert first.status_code == 201, first.json()
    IdempotencyRecord.objects.all().delete()
    calls = len(zoom.requests)

    again = post(user_client, request, key="zoom-8")

    assert again.status_code == 201, again.json()
    assert again.json()["id"] == first.json()["id"] and again.json()["meeting_id"] == first.json()["meeting_id"]
    assert len(zoom.meetings) == 1 and Meeting.objects.count() == 1 and len(zoom.requests) == calls


def test_a_finished_create_whose_meeting_was_cancelled_asks_for_a_new_key(user_client, zoom):
    request = body("zoom")
    made = post(user_client, request, key="zoom-9").json()
    assert user_client.delete(f"{URL}{made['id']}/").status_code == 200
    IdempotencyRecord.objects.all().delete()

    again = post(user_client, request, key="zoom-9")

    assert again.status_code == 409 and again.json()["error"] == "meeting_deleted", again.json()
    assert not zoom.meetings and Meeting.objects.count() == 1


def test_an_adopted_meeting_registers_each_participant_once(user_client, zoom):
    request = body("zoom", participants=PEOPLE, settings={"registration": True})
    zoom.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request, key="zoom-10").status_code == 504

    retry = post(user_client, request, key="zoom-10")

    assert retry.status_code == 201, retry.json()
    [(mid, made)] = zoom.meetings.items()
    assert made["settings"]["approval_type"] == 0 and made["settings"]["custom_keys"]  # both kept
    assert sorted((r["meeting"], r["email"]) for r in zoom.registrants.values()) == [
        (mid, "ana@example.com"),
        (mid, "bo@example.com"),
    ]
    assert all("tk=reg_" in p["join_url"] for p in retry.json()["participants"])


def test_zoom_answers_a_registrant_added_again_with_the_one_it_has(user_client, zoom):
    """What the fake plays of Zoom: the same email on the same meeting is the same registrant, not a second."""
    made = post(user_client, body("zoom", participants=PEOPLE[:1], settings={"registration": True})).json()
    [participant] = made["participants"]

    again = zoom_api.registrant_add(meeting_id=made["meeting_id"], email="ana@example.com", first_name="Ana")

    assert len(zoom.registrants) == 1 and again.join_url == participant["join_url"]


def test_a_meeting_deleted_at_zoom_between_attempts_is_made_again(user_client, zoom):
    """Zoom cannot tell "never made" from "made and deleted": the retry finds nothing and creates (documented)."""
    request = body("zoom")
    zoom.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, request, key="zoom-11").status_code == 504
    zoom.meetings.clear()

    retry = post(user_client, request, key="zoom-11")

    assert retry.status_code == 201, retry.json()
    [mid] = zoom.meetings
    assert retry.json()["meeting_id"] == mid and len(listings(zoom)) == 1 and len(creates(zoom)) == 2


def test_staff_can_view_a_create_record_but_not_add_or_edit_it(admin_client, user_client, zoom):
    """The row is what keeps a retry from making a second meeting: admin shows it, and refuses to make or change one."""
    from django.urls import reverse

    from scheduling.models import MeetingCreate

    zoom.lose_next.append(httpx.ReadTimeout("The read operation timed out"))
    assert post(user_client, body("zoom"), key="zoom-12").status_code == 504
    row = MeetingCreate.objects.get()
    assert row.doubt == MeetingCreate.Doubt.AMBIGUOUS
    change = reverse("admin:scheduling_meetingcreate_change", args=[row.pk])
    assert admin_client.get(change).status_code == 200
    listing = admin_client.get(reverse("admin:scheduling_meetingcreate_changelist"))
    assert listing.status_code == 200
    [providers] = [spec for spec in listing.context["cl"].filter_specs if spec.title == "provider"]
    # Every provider's creates are recorded (Meet and Teams since their finished creates answer late retries).
    assert [label for _, label in providers.field.flatchoices] == [p.label for p in Meeting.Provider]
    for provider, rows in (("zoom", [row]), ("webex", [])):
        filtered = admin_client.get(reverse("admin:scheduling_meetingcreate_changelist"), {"provider": provider})
        assert list(filtered.context["cl"].result_list) == rows
    assert admin_client.get(reverse("admin:scheduling_meetingcreate_add")).status_code == 403
    assert admin_client.post(change, {"owner": row.owner_id, "doubt": ""}).status_code == 403
    delete = reverse("admin:scheduling_meetingcreate_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    row.refresh_from_db()
    assert row.doubt == MeetingCreate.Doubt.AMBIGUOUS
