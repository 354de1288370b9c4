"""Zoom webhooks: signed as Zoom signs them, stored once, applied to meetings in event-time order."""

import datetime as dt
import hashlib
import hmac
import json
import time

import pytest

from config.celery import app as celery_app
from integrations.models import WebhookEvent
from scheduling.models import Meeting, MeetingRecording

from ..factories import UserFactory

pytestmark = pytest.mark.django_db
URL = "/webhooks/zoom/"


def sign(body, secret, ts):
    return "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()


@pytest.fixture
def deliver(client, zoom, django_capture_on_commit_callbacks):
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True

    def send(event, obj, *, event_ts=None, secret=None, ts=None, signature=None):
        body = json.dumps(
            {
                "event": event,
                "event_ts": event_ts or int(time.time() * 1000),
                "payload": {"account_id": "acct", "object": obj},
            }
        ).encode()
        ts = str(int(time.time())) if ts is None else str(ts)
        sig = signature if signature is not None else sign(body, secret or zoom.webhook_secret, ts)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                URL, body, content_type="application/json", HTTP_X_ZM_SIGNATURE=sig, HTTP_X_ZM_REQUEST_TIMESTAMP=ts
            )

    yield send
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def meeting(zoom):
    return Meeting.objects.create(
        owner=UserFactory(),
        provider="zoom",
        external_id="85746065001",
        topic="Review",
        start_time=dt.datetime(2030, 1, 10, 15, tzinfo=dt.UTC),
        duration_minutes=45,
        join_url="https://us02web.zoom.us/j/85746065001",
    )


def ms(minute):
    return int(dt.datetime(2030, 1, 10, 15, minute, tzinfo=dt.UTC).timestamp() * 1000)


class TestVerification:
    def test_the_url_validation_challenge_is_answered_with_the_encrypted_token(self, client, zoom):
        body = json.dumps(
            {"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}}
        ).encode()
        ts = str(int(time.time()))
        response = client.post(
            URL, body, content_type="application/json",
            HTTP_X_ZM_SIGNATURE=sign(body, zoom.webhook_secret, ts), HTTP_X_ZM_REQUEST_TIMESTAMP=ts,
        )  # fmt: skip
        expected = hmac.new(zoom.webhook_secret.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
        assert response.status_code == 200
        assert response.json() == {"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected}
        assert not WebhookEvent.objects.exists()

    def test_during_a_rotation_the_challenge_is_answered_with_the_token_that_signed_it(self, client, zoom, settings):
        settings.ZOOM_WEBHOOK_SECRET_TOKEN = f"new_token,{zoom.webhook_secret}"
        body = json.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "abc"}}).encode()
        ts = str(int(time.time()))
        response = client.post(
            URL, body, content_type="application/json",
            HTTP_X_ZM_SIGNATURE=sign(body, zoom.webhook_secret, ts), HTTP_X_ZM_REQUEST_TIMESTAMP=ts,
        )  # fmt: skip
        expected = hmac.new(zoom.webhook_secret.encode(), b"abc", hashlib.sha256).hexdigest()
        assert response.status_code == 200 and response.json()["encryptedToken"] == expected

    def test_a_stale_url_validation_is_refused(self, client, zoom):
        body = json.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "abc"}}).encode()
        ts = str(int(time.time()) - 3600)
        response = client.post(
            URL, body, content_type="application/json",
            HTTP_X_ZM_SIGNATURE=sign(body, zoom.webhook_secret, ts), HTTP_X_ZM_REQUEST_TIMESTAMP=ts,
        )  # fmt: skip
        assert response.status_code == 403 and response.json()["error"] == "stale_signature"

    def test_an_unsigned_url_validation_is_refused(self, client, zoom):
        body = json.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "abc"}}).encode()
        response = client.post(URL, body, content_type="application/json")
        assert response.status_code == 403 and "encryptedToken" not in response.content.decode()

    def test_a_bad_signature_is_403_and_stores_nothing(self, deliver, meeting):
        response = deliver("meeting.started", {"id": 85746065001}, secret="wrong")
        assert response.status_code == 403 and response.json()["error"] == "bad_signature"
        assert not WebhookEvent.objects.exists()

    def test_a_missing_signature_is_403(self, deliver, meeting):
        assert deliver("meeting.started", {"id": 85746065001}, signature="").status_code == 403

    def test_a_stale_delivery_is_403_as_a_possible_replay(self, deliver, meeting):
        response = deliver("meeting.started", {"id": 85746065001}, ts=int(time.time()) - 301)
        assert response.status_code == 403 and response.json()["error"] == "stale_signature"

    def test_a_malformed_body_is_400(self, client, zoom):
        body, ts = b'{"event": 5}', str(int(time.time()))
        response = client.post(
            URL, body, content_type="application/json",
            HTTP_X_ZM_SIGNATURE=sign(body, zoom.webhook_secret, ts), HTTP_X_ZM_REQUEST_TIMESTAMP=ts,
        )  # fmt: skip
        assert response.status_code == 400

    def test_without_a_secret_token_it_is_503(self, deliver, meeting, settings):
        settings.ZOOM_WEBHOOK_SECRET_TOKEN = ""
        assert deliver("meeting.started", {"id": 85746065001}).status_code == 503


class TestLifecycle:
    def test_started_then_ended_move_the_meeting_and_a_duplicate_changes_nothing(self, deliver, meeting):
        started = {"id": 85746065001, "start_time": "2030-01-10T15:01:00Z"}
        assert deliver("meeting.started", started, event_ts=ms(1)).status_code == 200
        assert deliver("meeting.started", started, event_ts=ms(1)).json()["status"] == "duplicate"
        deliver("meeting.ended", {"id": 85746065001, "end_time": "2030-01-10T15:44:00Z"}, event_ts=ms(44))
        meeting.refresh_from_db()
        assert meeting.status == "ended" and meeting.started_at.minute == 1 and meeting.ended_at.minute == 44
        assert WebhookEvent.objects.count() == 2

    def test_a_late_started_after_ended_does_not_reopen_the_meeting(self, deliver, meeting):
        deliver("meeting.ended", {"id": 85746065001, "end_time": "2030-01-10T15:44:00Z"}, event_ts=ms(44))
        deliver("meeting.started", {"id": 85746065001, "start_time": "2030-01-10T15:01:00Z"}, event_ts=ms(1))
        meeting.refresh_from_db()
        assert meeting.status == "ended"

    def test_attendance_is_recorded_from_participant_events(self, deliver, meeting):
        person = {"user_name": "Ana Lima", "email": "Ana@Example.com"}
        deliver(
            "meeting.participant_joined",
            {"id": 85746065001, "participant": {**person, "join_time": "2030-01-10T15:02:00Z"}},
        )
        deliver(
            "meeting.participant_left",
            {"id": 85746065001, "participant": {**person, "leave_time": "2030-01-10T15:40:00Z"}},
        )
        [p] = meeting.participants.all()
        assert (p.email, p.joined_at.minute, p.left_at.minute) == ("ana@example.com", 2, 40)

    def test_recording_completed_books_the_recordings(self, deliver, meeting):
        files = [{"id": "f1", "file_type": "MP4", "file_size": 123, "recording_type": "active_speaker",
                  "download_url": "https://zoom-storage.test/rec/1", "recording_start": "2030-01-10T15:00:00Z"}]  # fmt: skip
        deliver("recording.completed", {"id": 85746065001, "recording_files": files})
        deliver("recording.completed", {"id": 85746065001, "recording_files": files}, event_ts=ms(50))
        [rec] = MeetingRecording.objects.all()
        assert (rec.meeting, rec.size_bytes, rec.file_type) == (meeting, 123, "MP4")

    def test_deleted_on_zoom_cancels_and_an_unknown_meeting_is_ignored(self, deliver, meeting):
        deliver("meeting.deleted", {"id": 85746065001})
        deliver("meeting.started", {"id": 111})
        meeting.refresh_from_db()
        assert meeting.status == "cancelled"
        assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed", "ignored"}


class TestAttendance:
    """One row per stretch of a person in the meeting; duplicates and out-of-order events land on the same row."""

    def _joined(self, deliver, person, minute, **kw):
        return deliver(
            "meeting.participant_joined",
            {"id": 85746065001, "participant": {**person, "join_time": f"2030-01-10T15:{minute:02d}:00Z"}},
            **kw,
        )

    def _left(self, deliver, person, joined, left, **kw):
        participant = {**person, "join_time": f"2030-01-10T15:{joined:02d}:00Z",
                       "leave_time": f"2030-01-10T15:{left:02d}:00Z"}  # fmt: skip
        return deliver("meeting.participant_left", {"id": 85746065001, "participant": participant}, **kw)

    def test_a_rejoin_is_a_second_stretch_and_the_invitee_window_spans_both(self, deliver, meeting):
        ana = {"user_name": "Ana Lima", "email": "Ana@Example.com", "participant_uuid": "uuid-ana"}
        self._joined(deliver, ana, 2)
        self._left(deliver, ana, 2, 10)
        self._joined(deliver, ana, 12)
        self._left(deliver, ana, 12, 40)

        rows = list(meeting.attendance.order_by("joined_at").values_list("joined_at__minute", "left_at__minute"))
        assert rows == [(2, 10), (12, 40)]
        [invitee] = meeting.participants.all()
        assert (invitee.email, invitee.joined_at.minute, invitee.left_at.minute) == ("ana@example.com", 2, 40)
        assert set(meeting.attendance.values_list("participant_key", "participant")) == {("uuid-ana", invitee.pk)}

    def test_a_left_before_its_joined_and_duplicates_make_one_row(self, deliver, meeting):
        bo = {"user_name": "Bo", "email": "bo@example.com", "participant_uuid": "uuid-bo"}
        self._left(deliver, bo, 5, 30, event_ts=ms(30))
        self._joined(deliver, bo, 5, event_ts=ms(5))
        self._joined(deliver, bo, 5, event_ts=ms(5))  # a redelivery: the inbox stores it once
        self._left(deliver, bo, 5, 30, event_ts=ms(31))  # the same left, sent again with a new event time

        [row] = meeting.attendance.all()
        assert (row.joined_at.minute, row.left_at.minute, row.name) == (5, 30, "Bo")

    def test_a_left_without_its_join_time_closes_the_open_stretch(self, deliver, meeting):
        guest = {"user_name": "Dial-in guest", "participant_uuid": "uuid-phone"}
        self._joined(deliver, guest, 3)
        deliver(
            "meeting.participant_left",
            {"id": 85746065001, "participant": {**guest, "leave_time": "2030-01-10T15:20:00Z"}},
        )
        [row] = meeting.attendance.all()
        assert (row.participant_key, row.email, row.joined_at.minute, row.left_at.minute) == ("uuid-phone", "", 3, 20)
        assert not meeting.participants.exists()  # a guest without an email is attendance, not an invitee

    def test_the_owner_reads_attendance_and_another_user_gets_404(self, deliver, meeting, client_for):
        self._joined(deliver, {"user_name": "Ana", "participant_uuid": "u1"}, 2)
        url = f"/api/v1/scheduling/meetings/{meeting.pk}/attendance/"
        body = client_for(meeting.owner).get(url).json()
        rows = body["results"] if isinstance(body, dict) else body
        assert [(r["participant_key"], r["name"]) for r in rows] == [("u1", "Ana")]
        assert client_for(UserFactory()).get(url).status_code == 404


class TestStateOrdering:
    def test_an_ended_before_its_started_stays_ended(self, deliver, meeting):
        deliver("meeting.ended", {"id": 85746065001, "end_time": "2030-01-10T15:44:00Z"}, event_ts=ms(44))
        deliver("meeting.started", {"id": 85746065001, "start_time": "2030-01-10T15:01:00Z"}, event_ts=ms(1))
        meeting.refresh_from_db()
        assert (meeting.status, meeting.ended_at.minute) == ("ended", 44)

    def test_a_started_without_an_event_time_never_reopens_an_ended_meeting(self, deliver, meeting):
        deliver("meeting.ended", {"id": 85746065001, "end_time": "2030-01-10T15:44:00Z"}, event_ts=ms(44))
        deliver("meeting.started", {"id": 85746065001, "start_time": "2030-01-10T15:50:00Z"}, event_ts="late")
        meeting.refresh_from_db()
        assert meeting.status == "ended"

    def test_a_restart_after_the_end_starts_it_again(self, deliver, meeting):
        deliver("meeting.started", {"id": 85746065001, "start_time": "2030-01-10T15:01:00Z"}, event_ts=ms(1))
        deliver("meeting.ended", {"id": 85746065001, "end_time": "2030-01-10T15:20:00Z"}, event_ts=ms(20))
        deliver("meeting.started", {"id": 85746065001, "start_time": "2030-01-10T15:30:00Z"}, event_ts=ms(30))
        meeting.refresh_from_db()
        assert (meeting.status, meeting.started_at.minute) == ("started", 30)

    def test_a_cancelled_meeting_stays_cancelled(self, deliver, meeting):
        deliver("meeting.deleted", {"id": 85746065001}, event_ts=ms(0))
        deliver("meeting.started", {"id": 85746065001, "start_time": "2030-01-10T15:01:00Z"}, event_ts=ms(1))
        meeting.refresh_from_db()
        assert meeting.status == "cancelled"
