"""Recording copies (issue 19 point 7): a recording-completed webhook books the recording, and with the
owner's opt-in the file is copied to the hub's storage (S3 on moto) and its storage is priced."""

import datetime as dt
import hashlib
import hmac
import json
import time
from decimal import Decimal

import httpx
import pytest

from integrations.models import ProviderCall
from scheduling.models import Meeting, MeetingRecording

from ..factories import UserFactory
from ..privacy.conftest import BUCKET

pytestmark = pytest.mark.django_db
MEETING_ID = 85746065001
FILES = [
    {"id": "rec-file-1", "file_type": "MP4", "file_size": 7000, "recording_type": "shared_screen_with_speaker_view",
     "download_url": f"https://zoom-storage.test/rec/download/{MEETING_ID}",
     "recording_start": "2030-01-10T15:00:05Z", "recording_end": "2030-01-10T15:40:00Z"},
]  # fmt: skip


@pytest.fixture
def completed(client, zoom, eager, django_capture_on_commit_callbacks):
    """Zoom tells the hub a meeting's recording is ready (signed as Zoom signs it)."""

    def send(files=FILES, meeting_id=MEETING_ID):
        raw = json.dumps(
            {
                "event": "recording.completed",
                "event_ts": int(time.time() * 1000),
                "payload": {"account_id": "acct", "object": {"id": meeting_id, "recording_files": files}},
            }
        ).encode()
        ts = str(int(time.time()))
        sig = "v0=" + hmac.new(zoom.webhook_secret.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/webhooks/zoom/", raw, content_type="application/json",
                HTTP_X_ZM_SIGNATURE=sig, HTTP_X_ZM_REQUEST_TIMESTAMP=ts,
            )  # fmt: skip
        assert response.status_code == 200, response.content
        return response

    return send


@pytest.fixture
def meeting(user):
    return Meeting.objects.create(
        owner=user,
        provider="zoom",
        external_id=str(MEETING_ID),
        topic="Review",
        start_time=dt.datetime(2030, 1, 10, 15, tzinfo=dt.UTC),
        duration_minutes=45,
        join_url=f"https://us02web.zoom.us/j/{MEETING_ID}",
    )


def _opt_in(client, on=True):
    response = client.patch("/api/v1/scheduling/preferences/", {"copy_recordings": on}, format="json")
    assert response.status_code == 200 and response.json()["copy_recordings"] is on
    return response


def _versions(s3, prefix="recordings/"):
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]


def test_without_the_opt_in_the_recording_is_booked_and_nothing_is_copied(user_client, meeting, completed, s3):
    assert user_client.get("/api/v1/scheduling/preferences/").json()["copy_recordings"] is False

    completed()

    rec = MeetingRecording.objects.get()
    assert (rec.meeting, rec.copy_status, rec.storage_key) == (meeting, "none", "")
    assert _versions(s3) == [] and not ProviderCall.objects.filter(provider="s3").exists()


def test_with_the_opt_in_the_recording_is_copied_to_s3_and_its_storage_is_priced(
    user, user_client, meeting, completed, s3, settings
):
    _opt_in(user_client)

    completed()
    completed()  # Zoom sends it again: booked once, copied once

    rec = MeetingRecording.objects.get()
    assert rec.copy_status == "copied" and rec.stored_bytes == 7000 and rec.copied_at
    assert rec.storage_backend == "s3" and rec.storage_key.startswith(f"recordings/{user.pk}/")
    body = s3.get_object(Bucket=BUCKET, Key=rec.storage_key)
    assert body["Body"].read() == b"MP4DATA" * 1000 and body["ContentType"] == "video/mp4"
    assert len(_versions(s3)) == 1
    # the download from Zoom and the upload to S3 are both in the call log, on the owner's account
    put = ProviderCall.objects.get(provider="s3", operation="put")
    assert (put.owner, put.outcome, put.units["bytes_in"]) == (user, "ok", 7000)
    assert ProviderCall.objects.filter(provider="zoom", operation="recording.download", owner=user).count() == 1
    # the stored bytes at the price table's GB-month price
    usage = user_client.get("/api/v1/scheduling/recordings/usage/").json()
    price = Decimal(settings.PROVIDER_PRICES["s3"]["storage"]["per_gb_month"]["STANDARD"])
    assert usage["bytes"] == 7000
    assert Decimal(usage["monthly_cost_usd"]) == (Decimal(7000) / 10**9 * price).quantize(Decimal("0.000001"))


def test_another_users_usage_is_their_own(user_client, client_for, meeting, completed, s3):
    _opt_in(user_client)
    completed()
    other = client_for(UserFactory())
    assert other.get("/api/v1/scheduling/recordings/usage/").json()["bytes"] == 0
    assert other.get("/api/v1/scheduling/preferences/").json()["copy_recordings"] is False


def test_a_download_that_fails_for_good_leaves_the_copy_failed_with_the_reason(
    user_client, meeting, completed, s3, zoom
):
    _opt_in(user_client)
    zoom.storage_fail.append(httpx.Response(404, json={"code": 3301, "message": "This recording does not exist."}))

    completed()

    rec = MeetingRecording.objects.get()
    assert rec.copy_status == "failed" and "does not exist" in rec.copy_error
    assert rec.next_attempt_at is None  # out of the outbox: it waits for a retry, never re-sent behind our back
    assert _versions(s3) == []


def test_bad_preference_input_is_a_400_that_changes_nothing(user_client):
    assert (
        user_client.patch("/api/v1/scheduling/preferences/", {"copy_recordings": "maybe"}, format="json").status_code
        == 400
    )
    assert user_client.patch("/api/v1/scheduling/preferences/", {}, format="json").status_code == 400
    assert user_client.get("/api/v1/scheduling/preferences/").json()["copy_recordings"] is False


def test_staff_copy_a_failed_recording_again_from_admin(
    admin_client, user_client, meeting, completed, s3, zoom, django_capture_on_commit_callbacks
):
    from integrations.audit.models import AuditEvent

    _opt_in(user_client)
    zoom.storage_fail.append(httpx.Response(404, json={"code": 3301, "message": "This recording does not exist."}))
    completed()
    rec = MeetingRecording.objects.get()
    assert rec.copy_status == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/scheduling/meetingrecording/", {"action": "copy_again", "_selected_action": [rec.pk]}, follow=True
        )

    assert response.status_code == 200
    rec.refresh_from_db()
    assert rec.copy_status == "copied" and rec.copy_error == "" and len(_versions(s3)) == 1
    assert AuditEvent.objects.filter(action="admin.copy_again", target_id=str(rec.pk)).exists()
    # a copied recording is refused (and the refusal audited), nothing is copied twice
    admin_client.post("/admin/scheduling/meetingrecording/", {"action": "copy_again", "_selected_action": [rec.pk]})
    assert len(_versions(s3)) == 1
    assert AuditEvent.objects.filter(action="admin.copy_again", outcome="denied").exists()


def test_the_hub_link_serves_the_copy_not_the_providers_file(user_client, api_client, meeting, completed, s3, zoom):
    from scheduling.services import recording_link_token

    _opt_in(user_client)
    completed()
    stored = MeetingRecording.objects.get()

    # the link the recordings list hands out (RecordingSerializer.link)
    response = api_client.get(f"/api/v1/scheduling/recording-links/{recording_link_token(stored)}/")

    assert response.status_code == 302 and response["Cache-Control"] == "private, no-store"
    location = response["Location"]
    assert stored.storage_key in location and BUCKET in location
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=" in location
    # Zoom was asked once, for the copy; the link did not go back to it
    assert ProviderCall.objects.filter(provider="zoom", operation="recording.download").count() == 1


def _erase_part_way(user, staff_user):
    """Another worker is part-way through `user`'s erasure: it has deleted the recording copies (none yet) and
    the rows, and has more apps to go."""
    from integrations.states import transition
    from privacy import erasure as erasure_service
    from privacy import registry
    from privacy.models import Erasure

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert transition(Erasure, erasure.pk, Erasure.Status.RUNNING, frm=Erasure.Status.SCHEDULED)
    registry.holder("scheduling").erase(user, erasure_service.EraseReport(erasure, pseudonym_user=UserFactory()))


def _erase_whole(user, staff_user):
    from privacy import erasure as erasure_service

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"


class _ErasedWhileStreaming(httpx.SyncByteStream):
    """Zoom's file, during whose download `erase` runs (a second worker)."""

    def __init__(self, erase):
        self.erase = erase

    def __iter__(self):
        yield b"MP4DATA" * 500
        self.erase()
        yield b"MP4DATA" * 500


@pytest.mark.parametrize(
    "erase,when",
    [(_erase_whole, "download"), (_erase_part_way, "download"), (_erase_part_way, "upload")],
    ids=["done-during-download", "part-way-during-download", "part-way-during-upload"],
)
def test_a_copy_under_way_while_its_owner_is_erased_leaves_nothing_in_storage(
    user, staff_user, user_client, meeting, completed, s3, zoom, monkeypatch, erase, when
):
    """The erasure deletes the copies the rows name and the user's recordings/ folder, then the rows. A copy
    under way stored its object after that: nothing would ever name it or delete it."""
    from documents.providers import S3Backend

    _opt_in(user_client)
    if when == "download":
        zoom.storage_fail.append(httpx.Response(200, stream=_ErasedWhileStreaming(lambda: erase(user, staff_user))))
    else:
        save = S3Backend.save

        def erased_meanwhile(self, key, *args, **kwargs):
            if key.startswith(f"recordings/{user.pk}/"):
                erase(user, staff_user)
            return save(self, key, *args, **kwargs)

        monkeypatch.setattr(S3Backend, "save", erased_meanwhile)

    completed()

    assert not MeetingRecording.objects.filter(meeting__owner_id=user.pk).exists()
    assert _versions(s3, prefix=f"recordings/{user.pk}/") == []
