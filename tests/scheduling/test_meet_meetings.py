"""Google Meet through the Calendar API (conferenceData) and the Meet REST API, over google-api-python-client."""

import pytest

from integrations.models import ProviderCall
from scheduling.models import Meeting

from ..factories import UserFactory
from .drive_fake import DRIVE_MEET_READONLY, MP4
from .helpers import URL, body, later

pytestmark = pytest.mark.django_db
PEOPLE = [{"email": "ana@example.com", "name": "Ana Lima"}, {"email": "bo@example.com"}]


def test_creating_a_meet_meeting_asks_for_hangouts_meet_and_answers_googles_link(user_client, meet_conn, google):
    response = user_client.post(URL, body("google_meet", agenda="Numbers", participants=PEOPLE), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    [insert] = [r for r in google.requests if r["method"] == "POST"]
    assert insert["path"] == "/calendar/v3/calendars/primary/events"
    assert insert["params"]["conferenceDataVersion"] == "1" and insert["params"]["sendUpdates"] == "all"
    assert insert["body"]["conferenceData"]["createRequest"]["conferenceSolutionKey"] == {"type": "hangoutsMeet"}
    assert [a["email"] for a in insert["body"]["attendees"]] == ["ana@example.com", "bo@example.com"]
    assert insert["body"]["start"]["timeZone"] == "Europe/Berlin" and insert["body"]["description"] == "Numbers"
    [(eid, event)] = google.events.items()
    code = event["conferenceData"]["conferenceId"]
    assert data["meeting_id"] == eid and data["join_url"] == f"https://meet.google.com/{code}"
    assert data["dial_in"][0]["number"] == "+1 650-555-0101" and data["dial_in"][0]["pin"] == "123456789"
    assert Meeting.objects.get().external_uuid == code
    assert list(ProviderCall.objects.filter(provider="google_meet").values_list("operation", flat=True)) == [
        "event.insert"
    ]


def test_a_pending_conference_is_read_back_once_not_invented(user_client, meet_conn, google):
    google.pending_first = True
    response = user_client.post(URL, body("google_meet"), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["join_url"].startswith("https://meet.google.com/abc-")
    assert [r["method"] for r in google.requests] == ["POST", "GET"]


@pytest.mark.parametrize(
    "extra,capability",
    [
        ({"settings": {"waiting_room": True}}, "waiting_room"),
        ({"settings": {"auto_recording": "cloud"}}, "auto_recording"),
        ({"breakout_rooms": [{"name": "A", "participants": ["ana@example.com"]}], "participants": PEOPLE}, "breakout_rooms"),
    ],
)  # fmt: skip
def test_what_meet_cannot_do_through_the_api_is_422(user_client, meet_conn, google, extra, capability):
    response = user_client.post(URL, body("google_meet", **extra), format="json")
    assert response.status_code == 422 and response.json()["capability"] == capability
    assert google.requests == []


def test_moving_a_meet_meeting_patches_start_and_end_and_tells_attendees(user_client, meet_conn, google):
    meeting = user_client.post(URL, body("google_meet", participants=PEOPLE), format="json").json()
    new_start = later(days=10)
    response = user_client.patch(f"{URL}{meeting['id']}/", {"start_time": new_start, "topic": "Moved"}, format="json")
    assert response.status_code == 200, response.json()
    [patch] = [r for r in google.requests if r["method"] == "PATCH"]
    assert patch["body"]["summary"] == "Moved" and patch["params"]["sendUpdates"] == "all"
    assert patch["body"]["start"]["dateTime"] == new_start.replace("+00:00", "Z") and "end" in patch["body"]
    assert response.json()["topic"] == "Moved"


def test_cancelling_deletes_the_event_with_send_updates_and_is_idempotent(user_client, meet_conn, google):
    meeting = user_client.post(URL, body("google_meet", participants=PEOPLE), format="json").json()
    assert user_client.delete(f"{URL}{meeting['id']}/").json()["status"] == "cancelled"
    assert google.deleted == (meeting["meeting_id"], "all") and not google.events
    assert user_client.delete(f"{URL}{meeting['id']}/").status_code == 200
    assert len([r for r in google.requests if r["method"] == "DELETE"]) == 1


def test_an_event_already_deleted_at_google_still_cancels(user_client, meet_conn, google):
    meeting = user_client.post(URL, body("google_meet"), format="json").json()
    google.events.clear()
    assert user_client.delete(f"{URL}{meeting['id']}/?notify=false").json()["status"] == "cancelled"


@pytest.mark.parametrize("how", ["gone", "kept_as_cancelled"])
def test_moving_an_event_deleted_at_google_is_a_409_and_cancels_the_row(user_client, meet_conn, google, how):
    meeting = user_client.post(URL, body("google_meet"), format="json").json()
    if how == "gone":
        google.events.clear()
    else:  # Google keeps a deleted event for a while, its status cancelled, and answers it
        google.events[meeting["meeting_id"]]["status"] = "cancelled"
    response = user_client.patch(f"{URL}{meeting['id']}/", {"topic": "Moved"}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "meeting_cancelled", response.json()
    assert Meeting.objects.get().status == "cancelled"


def test_a_google_rate_limit_403_is_a_503_with_retry_after(user_client, meet_conn, google):
    error = {"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": [{"reason": "rateLimitExceeded"}]}}
    google.fail_next.append((403, error, {"retry-after": "9"}))
    response = user_client.post(URL, body("google_meet"), format="json")
    assert response.status_code == 503 and response.json()["error"] == "provider_rate_limited"
    assert response["Retry-After"] == "9" and not Meeting.objects.exists()


def test_a_connection_without_the_calendar_scope_is_403_naming_it(user_client, meet_conn, google):
    meet_conn.scopes = ["openid"]
    meet_conn.save()
    response = user_client.post(URL, body("google_meet"), format="json")
    assert response.status_code == 403 and response.json()["error"] == "missing_scope"
    assert google.requests == []


def test_another_users_meeting_is_404(user_client, client_for, meet_conn, google):
    meeting = user_client.post(URL, body("google_meet"), format="json").json()
    other = client_for(UserFactory())
    assert other.patch(f"{URL}{meeting['id']}/", {"topic": "x"}, format="json").status_code == 404
    assert other.delete(f"{URL}{meeting['id']}/").status_code == 404


def test_recordings_without_the_meet_scope_are_reported_not_available(user_client, meet_conn, google):
    meeting = user_client.post(URL, body("google_meet"), format="json").json()
    response = user_client.get(f"{URL}{meeting['id']}/recordings/")
    assert response.status_code == 403 and response.json()["capability"] == "meeting_records"
    assert response.json()["missing_scopes"] == ["https://www.googleapis.com/auth/meetings.space.readonly"]


def test_recordings_and_transcripts_come_from_the_meet_rest_api(user_client, api_client, meet_conn, google, drive):
    meet_conn.scopes += ["https://www.googleapis.com/auth/meetings.space.readonly", DRIVE_MEET_READONLY]
    meet_conn.capabilities += ["meeting_records"]
    meet_conn.save()
    meeting = user_client.post(URL, body("google_meet"), format="json").json()
    google.record(Meeting.objects.get().external_uuid)
    rows = user_client.get(f"{URL}{meeting['id']}/recordings/").json()
    assert sorted((r["recording_type"], r["file_type"]) for r in rows) == [("recording", "MP4"), ("transcript", "TXT")]
    [listing] = [r for r in google.requests if r["path"] == "/v2/conferenceRecords"]
    assert listing["host"] == "meet.googleapis.com" and "space.meeting_code" in listing["params"]["filter"]
    rec = next(r for r in rows if r["recording_type"] == "recording")
    download = api_client.get(rec["link"].replace("http://testserver", ""))
    assert download.status_code == 200 and b"".join(download.streaming_content) == MP4  # the MP4 in Drive
    transcript = next(r for r in rows if r["recording_type"] == "transcript")
    download = api_client.get(transcript["link"].replace("http://testserver", ""))
    assert download.status_code == 200 and b"".join(download.streaming_content) == drive.docs["1DoC"].encode()
