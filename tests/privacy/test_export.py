"""Export: one zip per request with a JSON file per app, the user's files and recordings, a README."""

import datetime as dt
import io
import json
import os
import tracemalloc
import zipfile

import pytest
import time_machine
from django.utils import timezone

from documents.models import DocumentVersion
from integrations.audit.models import AuditEvent
from privacy import exports
from privacy.models import Export
from scheduling.models import MeetingRecording
from tests.documents.factories import DocumentFactory, DocumentVersionFactory

from .conftest import BUCKET, populate, twilio_media

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    """POST as a client does; tasks queued on commit run (eagerly, when the test asks for `eager`)."""

    def send(client, data=None, path="/api/v1/privacy/export/"):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(path, data or {}, format="json")

    return send


def _download(client, export):
    body = client.get(f"/api/v1/privacy/exports/{export['id']}/").json()
    assert body["status"] == "ready", body
    url = body["download"]["url"]
    response = client.get(url[url.index("/api/") :])
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_it_exports_what_every_app_holds_about_the_user_and_nothing_of_others(
    post, user, other_user, client_for, eager, http
):
    mine = populate(user, tag="mine")
    theirs = populate(other_user, tag="theirs")
    twilio_media(http, mine)
    client = client_for(user)

    response = post(client, {})

    assert response.status_code == 202
    zf = _download(client, response.json())
    names = set(zf.namelist())
    assert {"README.txt", "account.json", "payments.json", "documents.json", "messaging.json", "mail.json"} <= names
    assert {"ai.json", "travel.json", "scheduling.json", "integrations.json", "audit.json"} <= names
    everything = b"".join(zf.read(n) for n in names).decode("utf-8", "replace")
    for marker in mine.markers - {"1//refresh-mine"}:
        if marker.startswith(("inbound text", "token ")):
            continue  # webhook payloads are not exported; token names are (below)
        assert marker in everything, marker
    for marker in theirs.markers:
        assert marker not in everything, marker
    # never credentials: no OAuth token, no API token digest
    assert "1//refresh-mine" not in everything and "ya29." not in everything
    integrations = json.loads(zf.read("integrations.json"))
    assert set(integrations["connections"][0]) >= {"provider", "account", "scopes", "status"}
    assert "access_token" not in integrations["connections"][0]
    assert integrations["api_tokens"][0]["name"] == "token mine" and "digest" not in integrations["api_tokens"][0]
    openai = [c for c in integrations["provider_calls"] if c["provider"] == "openai"]
    assert sum(float(c["cost_usd"]) for c in openai) == pytest.approx(0.0237)
    # current versions only by default, with their bytes
    current = set(user.documents.values_list("current_version_id", flat=True))
    for v in DocumentVersion.objects.filter(document__owner=user):
        arcname = f"documents/{v.document_id}/v{v.number}-{v.filename}"
        if v.pk in current:
            assert zf.read(arcname) == mine.files[v.storage_key]
        else:
            assert arcname not in names
    # the recording, fetched through the gateway
    rec_sid, _, media = mine.recordings[0]
    assert zf.read(f"recordings/call-{user.call_logs.get().pk}-{rec_sid}.mp3") == media
    # the meeting recording the hub copied for the user, with its bytes; the attendance rows
    copied = MeetingRecording.objects.get(meeting__owner=user, copy_status="copied")
    assert (
        zf.read(f"meeting-recordings/{copied.meeting_id}/{copied.pk}.mp4") == mine.recording_copies[copied.storage_key]
    )
    scheduling = json.loads(zf.read("scheduling.json"))
    assert scheduling["attendance"][0]["name"] == "Attendee mine"
    # the calendars and their events, the meetings' lifecycle subscriptions; never a sync cursor or push secret
    assert {c["name"] for c in scheduling["calendars"]} == {"calendar mine", "outlook calendar mine"}
    assert {e["title"] for e in scheduling["calendar_events"]} == {"google event mine", "microsoft event mine"}
    assert [s["external_id"] for s in scheduling["lifecycle_subscriptions"]] == ["sub-teams-mine"]
    for row in scheduling["calendars"] + scheduling["lifecycle_subscriptions"]:
        assert not {"client_state", "sync_token", "delta_link", "raw"} & set(row)
    # which meeting each create under an Idempotency-Key made; its create id (a digest) left out
    assert sorted(c["doubt"] for c in scheduling["meeting_creates"]) == ["", "ambiguous"]
    assert not any("create_id" in c for c in scheduling["meeting_creates"])
    for secret in mine.secrets:
        assert secret not in everything, secret
    readme = zf.read("README.txt").decode()
    assert "payments.json" in readme and "Credentials are never exported" in readme
    export = Export.objects.get()
    assert export.size > 0 and len(export.sha256) == 64 and export.manifest["rows"]["payments.json"]["invoices"] == 1
    assert AuditEvent.objects.filter(action="privacy.export", actor=user, target_id=str(user.pk)).exists()


def test_all_versions_on_request(post, user, client_for, eager, http):
    mine = populate(user, tag="v")
    twilio_media(http, mine)
    client = client_for(user)
    export = post(client, {"include_all_versions": True}).json()
    names = _download(client, export).namelist()
    assert len([n for n in names if n.startswith("documents/")]) == 3


def test_progress_is_visible_while_queued_and_the_owner_only_sees_their_own(post, user, other_user, client_for):
    client = client_for(user)
    export = post(client, {}).json()
    assert export["status"] == "queued" and export["progress"] == 0 and export["download"] is None
    # a second request while one is in progress returns the same export
    assert post(client, {}).json()["id"] == export["id"]
    assert client_for(other_user).get(f"/api/v1/privacy/exports/{export['id']}/").status_code == 404


def test_only_staff_may_export_another_user(post, user, other_user, staff_user, client_for, eager, http):
    populate(other_user, tag="o")
    refused = post(client_for(user), {"user": other_user.pk})
    assert refused.status_code == 403
    done = post(client_for(staff_user), {"user": other_user.pk})
    assert done.status_code == 202 and done.json()["user"] == other_user.pk


def test_the_link_expires_after_24_hours_and_the_zip_is_deleted_after_7_days(post, user, client_for, eager):
    client = client_for(user)
    export = post(client, {}).json()
    url = client.get(f"/api/v1/privacy/exports/{export['id']}/").json()["download"]["url"]
    path = url[url.index("/api/") :]
    row = Export.objects.get()
    assert os.path.exists(os.path.join(exports.settings.PRIVACY_EXPORT_ROOT, row.storage_key))
    with time_machine.travel(timezone.now() + dt.timedelta(hours=24, minutes=1)):
        assert client.get(path).json()["error"] == "link_expired"
    with time_machine.travel(timezone.now() + dt.timedelta(days=7, minutes=1)):
        assert exports.exports_purge() == 1
    row.refresh_from_db()
    assert row.status == "expired" and row.storage_key == ""
    assert not os.listdir(exports.settings.PRIVACY_EXPORT_ROOT / "privacy-exports")
    assert client.get(path).status_code == 404


def test_a_forged_link_is_refused(post, user, client_for, eager):
    post(client_for(user), {})
    assert client_for(user).get("/api/v1/privacy/exports/files/not-a-token/").json()["error"] == "link_invalid"


def test_on_s3_the_zip_is_private_and_the_link_presigned(post, user, client_for, eager, s3, http):
    mine = populate(user, tag="s3")
    twilio_media(http, mine)
    client = client_for(user)
    export = post(client, {}).json()
    body = client.get(f"/api/v1/privacy/exports/{export['id']}/").json()
    assert body["status"] == "ready"
    key = Export.objects.get().storage_key
    assert key.startswith("privacy-exports/")
    assert "X-Amz-Signature=" in body["download"]["url"] and "X-Amz-Expires=86400" in body["download"]["url"]
    zipped = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert "documents.json" in zipfile.ZipFile(io.BytesIO(zipped)).namelist()
    # purge removes every version of the zip
    exports.exports_purge(now=timezone.now() + dt.timedelta(days=8))
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")


def test_a_failing_provider_fails_the_export_with_a_reason(post, user, client_for, eager, http):
    mine = populate(user, tag="f")
    rec_sid = mine.recordings[0][0]
    http.add(
        "GET",
        f"https://api.twilio.com/2010-04-01/Accounts/{exports.settings.TWILIO_ACCOUNT_SID}/Recordings/{rec_sid}.mp3",
        status=503,
    )
    export = post(client_for(user), {}).json()
    row = Export.objects.get(pk=export["id"])
    assert row.status == "failed"
    assert "api.twilio.com" in row.error or "503" in row.error, row.error


def test_a_few_hundred_megabytes_of_documents_stream_through_bounded_memory(user, settings):
    """256 MB of files on the filesystem backend: the build's Python allocations stay far below the data."""
    chunk = os.urandom(1024 * 1024)
    doc = DocumentFactory(owner=user)
    for n in range(1, 5):
        key = f"documents/big/{n}"
        path = settings.MEDIA_ROOT / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            for _ in range(64):
                fh.write(chunk)
        DocumentVersionFactory(document=doc, number=n, filename=f"big{n}.bin", size=64 << 20, storage_key=key)
    export, _ = exports.export_request(subject=user, requested_by=user, include_all_versions=True)

    tracemalloc.start()
    try:
        exports.export_build(export_id=export.pk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    export.refresh_from_db()
    assert export.status == "ready" and export.size > 256 << 20
    assert peak < 50 << 20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("how", ["action", "delete_view"])
def test_staff_deleting_an_export_in_admin_deletes_its_zip(post, user, client_for, admin_client, eager, how):
    """The purge finds zips through their rows: a zip whose row staff deleted would stay in storage for good."""
    post(client_for(user), {})
    row = Export.objects.get()
    path = os.path.join(exports.settings.PRIVACY_EXPORT_ROOT, row.storage_key)
    assert row.status == "ready" and os.path.exists(path)

    if how == "action":
        response = admin_client.post(
            "/admin/privacy/export/", {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
        )
    else:
        response = admin_client.post(f"/admin/privacy/export/{row.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Export.objects.filter(pk=row.pk).exists()
    assert not os.path.exists(path)
    assert exports.exports_purge(now=timezone.now() + dt.timedelta(days=8)) == 0


def test_an_export_past_its_expiry_gives_no_link_even_before_the_purge_has_run(post, user, client_for, eager):
    """The purge runs every few minutes (beat); from the export's expiry on, its zip is not downloadable."""
    client = client_for(user)
    export = post(client, {}).json()
    expires_at = Export.objects.get(pk=export["id"]).expires_at

    with time_machine.travel(expires_at + dt.timedelta(minutes=1), tick=False):
        body = client.get(f"/api/v1/privacy/exports/{export['id']}/").json()
        download = body["download"] and client.get(body["download"]["url"].split("testserver", 1)[1])

    assert Export.objects.get(pk=export["id"]).status == "ready"  # the purge has not run yet
    assert body["download"] is None, download.status_code
