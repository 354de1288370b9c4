"""Webex meetings on the user's own Webex OAuth connection, and Webex's lifecycle webhooks."""

import datetime as dt
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from config.celery import app as celery_app
from integrations.models import Connection, OAuthState, ProviderCall, WebhookEvent
from scheduling.models import Meeting, MeetingRecording

from ..factories import UserFactory
from .helpers import URL, body, later

pytestmark = pytest.mark.django_db
PEOPLE = [{"email": "ana@example.com", "name": "Ana Lima"}, {"email": "bo@example.com"}]


def test_creating_a_webex_meeting_answers_webexs_link_password_and_dial_in(user_client, webex_conn, webex_api):
    rooms = [
        {"name": "Room A", "participants": ["ana@example.com"]},
        {"name": "Room B", "participants": ["bo@example.com"]},
    ]
    settings = {"waiting_room": True, "mute_on_entry": True, "auto_recording": "cloud"}
    response = user_client.post(
        URL, body("webex", participants=PEOPLE, breakout_rooms=rooms, settings=settings), format="json"
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    [(mid, sent)] = webex_api.meetings.items()
    assert data["meeting_id"] == mid and data["join_url"] == sent["webLink"] and data["passcode"] == "BgJep@43"
    assert data["dial_in"][0]["number"] == "+1-415-527-5035"
    assert [i["email"] for i in sent["invitees"]] == ["ana@example.com", "bo@example.com"]
    assert (
        sent["breakoutSessions"]
        == [
            {"name": "Room A", "invitees": ["ana@example.com"]},
            {"name": "Room B", "invitees": ["bo@example.com"]},
        ]
        and sent["enabledBreakoutSessions"] is True
    )
    assert sent["unlockedMeetingJoinSecurity"] == "allowJoinWithLobby" and sent["enabledAutoRecordMeeting"] is True
    assert sent["audioConnectionOptions"] == {"muteAttendeeUponEntry": True}
    assert sent["timezone"] == "Europe/Berlin" and sent["start"].endswith("Z") and sent["end"].endswith("Z")
    create = next(r for r in webex_api.requests if r.method == "POST" and r.url.path.endswith("/meetings"))
    assert json.loads(create.content)["sendEmail"] is True


def test_the_first_meeting_registers_the_hubs_webhooks_once(user_client, webex_conn, webex_api):
    user_client.post(URL, body("webex"), format="json")
    user_client.post(URL, body("webex", topic="Second"), format="json")
    hooks = {(h["resource"], h["event"]) for h in webex_api.webhooks}
    assert ("meetings", "started") in hooks and ("recordings", "created") in hooks and len(webex_api.webhooks) == 6
    assert {h["targetUrl"] for h in webex_api.webhooks} == {"https://hub.example.com/webhooks/webex/"}
    assert {h["secret"] for h in webex_api.webhooks} == {"webex-webhook-secret"}


def test_updating_reads_the_meeting_and_puts_it_back_whole(user_client, webex_conn, webex_api):
    meeting = user_client.post(URL, body("webex"), format="json").json()
    new_start = later(days=12)
    response = user_client.patch(f"{URL}{meeting['id']}/", {"start_time": new_start, "topic": "Moved"}, format="json")
    assert response.status_code == 200, response.json()
    sent = webex_api.meetings[meeting["meeting_id"]]
    assert sent["title"] == "Moved" and sent["start"] == new_start.replace("+00:00", "Z")
    assert sent["password"] == "BgJep@43" and sent["lastSendEmail"] is True


def test_cancelling_deletes_with_send_email_and_is_idempotent(user_client, webex_conn, webex_api):
    meeting = user_client.post(URL, body("webex", participants=PEOPLE), format="json").json()
    assert user_client.delete(f"{URL}{meeting['id']}/").json()["status"] == "cancelled"
    [delete] = [r for r in webex_api.requests if r.method == "DELETE"]
    assert delete.url.params["sendEmail"] == "true" and not webex_api.meetings
    assert user_client.delete(f"{URL}{meeting['id']}/").status_code == 200
    assert len([r for r in webex_api.requests if r.method == "DELETE"]) == 1


def test_a_meeting_already_gone_at_webex_still_cancels(user_client, webex_conn, webex_api):
    meeting = user_client.post(URL, body("webex"), format="json").json()
    webex_api.meetings.clear()
    assert user_client.delete(f"{URL}{meeting['id']}/").json()["status"] == "cancelled"


def test_moving_a_meeting_gone_at_webex_is_a_409_and_cancels_the_row(user_client, webex_conn, webex_api):
    meeting = user_client.post(URL, body("webex"), format="json").json()
    webex_api.meetings.clear()
    response = user_client.patch(f"{URL}{meeting['id']}/", {"topic": "Moved"}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "meeting_cancelled", response.json()
    assert Meeting.objects.get().status == "cancelled"


def test_a_webex_429_is_a_503_with_its_retry_after(user_client, webex_conn, webex_api):
    webex_api.fail_next.append((429, {"message": "Too Many Requests"}, {"Retry-After": "30"}))
    response = user_client.post(URL, body("webex"), format="json")
    assert response.status_code == 503 and response["Retry-After"] == "30" and not Meeting.objects.exists()


def test_registration_is_zooms_alone(user_client, webex_conn, webex_api):
    response = user_client.post(URL, body("webex", settings={"registration": True}), format="json")
    assert response.status_code == 422 and response.json()["capability"] == "registrants"


def test_another_users_meeting_is_404(user_client, client_for, webex_conn, webex_api):
    meeting = user_client.post(URL, body("webex"), format="json").json()
    other = client_for(UserFactory())
    assert other.get(f"{URL}{meeting['id']}/").status_code == 404
    assert other.get(f"{URL}{meeting['id']}/recordings/").status_code == 404


def test_recordings_are_listed_and_stream_from_a_fresh_temporary_link(user_client, api_client, webex_conn, webex_api):
    meeting = user_client.post(URL, body("webex"), format="json").json()
    webex_api.record(meeting["meeting_id"])
    [rec] = user_client.get(f"{URL}{meeting['id']}/recordings/").json()
    assert rec["size_bytes"] == 80 and "webex-storage" not in rec["link"]
    download = api_client.get(rec["link"].replace("http://testserver", ""))
    assert download.status_code == 200, download.content
    assert b"".join(download.streaming_content) == b"WEBEXMP4" * 10
    storage = [r for r in webex_api.requests if r.url.path.startswith("/v1/recordings/")]
    assert len(storage) == 1  # the temporary link was asked for at download time


def test_connecting_webex_runs_the_oauth_flow_and_names_the_account(user, user_client, webex_api):
    import responses

    start = user_client.post("/api/v1/connections/webex/start/", {"capabilities": ["meetings"]}, format="json")
    assert start.status_code in (200, 201), start.json()
    url = start.json()["authorization_url"]
    query = parse_qs(urlsplit(url).query)
    assert url.startswith("https://webexapis.test/v1/authorize") and "meeting:schedules_write" in query["scope"][0]
    assert query["code_challenge_method"] == ["S256"]
    state = OAuthState.objects.get()
    token = {"access_token": webex_api.token, "refresh_token": "rt", "expires_in": 1209599, "token_type": "Bearer"}
    with responses.RequestsMock() as rsps:  # the token endpoint is spoken over requests (requests-oauthlib)
        rsps.add(responses.POST, "https://webexapis.test/v1/access_token", json=token)
        done = user_client.get(f"/api/v1/connections/webex/callback/?state={state.state}&code=abc")
        assert "code_verifier=" in rsps.calls[0].request.body
    assert done.status_code in (200, 201), done.content
    conn = Connection.objects.get(owner=user, provider="webex")
    assert conn.account == "ana@webex.example" and "meetings" in conn.capabilities
    assert ProviderCall.objects.filter(provider="webex", operation="people.me").exists()


# --- lifecycle webhooks -------------------------------------------------------------------


@pytest.fixture
def deliver(client, webex_api, django_capture_on_commit_callbacks):
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True

    def send(resource, event, data, *, secret="webex-webhook-secret"):
        raw = json.dumps({"id": "wh1", "resource": resource, "event": event, "data": data}).encode()
        sig = hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/webhooks/webex/", raw, content_type="application/json", HTTP_X_SPARK_SIGNATURE=sig)

    yield send
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def meeting(webex_conn):
    return Meeting.objects.create(
        owner=webex_conn.owner,
        provider="webex",
        connection=webex_conn,
        external_id="870f51ff287b41be84648412901e0402",
        topic="Review",
        start_time=dt.datetime(2030, 1, 10, 15, tzinfo=dt.UTC),
        duration_minutes=45,
        join_url="https://example.webex.com/j.php?MTID=m1",
    )


def test_a_bad_webex_signature_is_403_and_stores_nothing(deliver, meeting):
    response = deliver("meetings", "started", {"id": f"{meeting.external_id}_I_1"}, secret="wrong")
    assert response.status_code == 403 and not WebhookEvent.objects.exists()


def test_started_then_ended_move_the_meeting_and_a_late_started_does_not_reopen_it(deliver, meeting):
    sid = meeting.external_id
    deliver("meetings", "started", {"id": f"{sid}_I_1", "meetingSeriesId": sid, "start": "2030-01-10T15:01:00Z"})
    meeting.refresh_from_db()
    assert meeting.status == "started" and meeting.started_at.minute == 1
    deliver("meetings", "ended", {"id": f"{sid}_I_1", "meetingSeriesId": sid, "end": "2030-01-10T15:50:00Z"})
    deliver("meetings", "started", {"id": f"{sid}_I_1", "meetingSeriesId": sid, "start": "2030-01-10T15:00:30Z"})
    meeting.refresh_from_db()
    assert meeting.status == "ended" and meeting.ended_at.minute == 50


def test_attendance_is_recorded_from_participant_events(deliver, meeting):
    base = {"meetingId": f"{meeting.external_id}_I_1", "email": "Ana@Example.com", "displayName": "Ana"}
    deliver("meetingParticipants", "joined", {**base, "id": "p1", "joinedTime": "2030-01-10T15:02:00Z"})
    deliver("meetingParticipants", "left", {**base, "id": "p1", "joinedTime": "2030-01-10T15:02:00Z",
                                             "leftTime": "2030-01-10T15:40:00Z"})  # fmt: skip
    person = meeting.participants.get(email="ana@example.com")
    assert person.joined_at.minute == 2 and person.left_at.minute == 40


def test_recording_created_books_the_recording(deliver, meeting):
    data = {"id": "rec1", "meetingId": f"{meeting.external_id}_I_1", "meetingSeriesId": meeting.external_id,
            "format": "MP4", "sizeBytes": 1234, "timeRecorded": "2030-01-10T15:00:00Z"}  # fmt: skip
    deliver("recordings", "created", data)
    deliver("recordings", "created", data)
    rec = MeetingRecording.objects.get()
    assert rec.external_id == "rec1" and rec.size_bytes == 1234 and rec.download_url.endswith("/recordings/rec1")


def test_deleted_at_webex_cancels_and_an_unknown_meeting_is_ignored(deliver, meeting):
    deliver("meetings", "deleted", {"id": "unknown0000"})
    deliver("meetings", "deleted", {"id": meeting.external_id})
    meeting.refresh_from_db()
    assert meeting.status == "cancelled"
    assert WebhookEvent.objects.filter(status="ignored").count() == 1


def test_a_rejoin_is_a_second_attendance_row_and_a_late_joined_lands_on_its_own_row(deliver, meeting):
    base = {"meetingId": f"{meeting.external_id}_I_1", "email": "bo@example.com", "displayName": "Bo", "id": "p2"}
    first = {"joinedTime": "2030-01-10T15:02:00Z"}
    second = {"joinedTime": "2030-01-10T15:20:00Z"}
    deliver("meetingParticipants", "left", {**base, **first, "leftTime": "2030-01-10T15:10:00Z"})
    deliver("meetingParticipants", "joined", {**base, **second})
    deliver("meetingParticipants", "joined", {**base, **first})  # late: belongs to the first stretch
    deliver("meetingParticipants", "left", {**base, **second, "leftTime": "2030-01-10T15:45:00Z"})
    rows = list(meeting.attendance.values_list("participant_key", "joined_at__minute", "left_at__minute"))
    assert sorted(rows) == [("p2", 2, 10), ("p2", 20, 45)]


def test_with_the_opt_in_a_created_recording_is_copied_to_the_hubs_storage(
    deliver, meeting, webex_api, client_for, settings, tmp_path
):
    settings.S3_BUCKET, settings.MEDIA_ROOT = "", tmp_path / "media"
    client_for(meeting.owner).patch("/api/v1/scheduling/preferences/", {"copy_recordings": True}, format="json")
    webex_api.record(meeting.external_id)
    item = webex_api.recordings[0]

    deliver("recordings", "created", {**item, "meetingSeriesId": meeting.external_id})

    rec = MeetingRecording.objects.get()
    assert (rec.copy_status, rec.storage_backend, rec.stored_bytes) == ("copied", "local", 80)
    stored = tmp_path / "media" / rec.storage_key
    assert stored.read_bytes() == b"WEBEXMP4" * 10 and rec.storage_key.startswith(f"recordings/{meeting.owner_id}/")
    assert ProviderCall.objects.filter(provider="webex", operation="recording.download").count() == 1
    # the hub link now streams the hub's copy (the filesystem here), not Webex's file
    owner = client_for(meeting.owner)
    [listed] = owner.get(f"{URL}{meeting.pk}/recordings/").json()
    download = owner.get(listed["link"].replace("http://testserver", ""))
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"WEBEXMP4" * 10
    assert ProviderCall.objects.filter(provider="webex", operation="recording.download").count() == 1
