"""Scanning every new version with clamd INSTREAM (a fake clamd speaking the real protocol)."""

import pytest

from documents import clamd, services
from documents.models import DocumentVersion
from integrations.models import Alert, ProviderCall

from .conftest import EICAR, PDF
from .helpers import URL, post, post_version

pytestmark = pytest.mark.django_db


def upload(client, capture, name, content, content_type):
    with capture(execute=True):
        resp = post(client, name, content, content_type)
    assert resp.status_code == 201, resp.json()
    return resp.json()


def test_the_eicar_test_file_is_quarantined_with_an_alert_and_refused(
    user_client, clamd_server, django_capture_on_commit_callbacks
):
    doc = upload(user_client, django_capture_on_commit_callbacks, "eicar.txt", EICAR, "text/plain")
    version = DocumentVersion.objects.get()
    assert (version.scan_status, version.scan_detail) == ("infected", "Eicar-Test-Signature")
    assert clamd_server.streams == [EICAR]
    alert = Alert.objects.get(kind="security")
    assert alert.severity == "critical" and "Eicar-Test-Signature" in alert.message
    resp = user_client.get(f"{URL}{doc['id']}/download/")
    assert resp.status_code == 403
    assert resp.json()["error"] == "document_infected" and "Eicar-Test-Signature" in resp.json()["detail"]
    assert user_client.get(f"{URL}{doc['id']}/").json()["scan_status"] == "infected"


def test_a_clean_file_is_marked_clean_and_downloadable_even_when_scans_are_required(
    user_client, clamd_server, settings, django_capture_on_commit_callbacks
):
    settings.DOCUMENT_REQUIRE_SCAN = True
    doc = upload(user_client, django_capture_on_commit_callbacks, "report.pdf", PDF, "application/pdf")
    assert DocumentVersion.objects.get().scan_status == "clean"
    assert user_client.get(f"{URL}{doc['id']}/download/").status_code == 200
    assert Alert.objects.count() == 0


def test_every_new_version_is_scanned(user_client, clamd_server, django_capture_on_commit_callbacks):
    doc = upload(user_client, django_capture_on_commit_callbacks, "a.txt", b"fine\n", "text/plain")
    with django_capture_on_commit_callbacks(execute=True):
        post_version(user_client, doc["id"], "a.txt", b"prefix " + EICAR, "text/plain")
    assert dict(DocumentVersion.objects.values_list("number", "scan_status")) == {1: "clean", 2: "infected"}
    # the older clean version is still available
    assert user_client.get(f"{URL}{doc['id']}/versions/1/download/").status_code == 200
    assert user_client.get(f"{URL}{doc['id']}/versions/2/download/").status_code == 403


def test_big_files_are_streamed_in_chunks(user_client, clamd_server, settings, django_capture_on_commit_callbacks):
    data = b"0123456789abcdef\n" * 20_000  # ~340 KB
    upload(user_client, django_capture_on_commit_callbacks, "big.txt", data, "text/plain")
    assert clamd_server.streams == [data]
    assert clamd_server.max_chunk_seen <= clamd.MAX_CHUNK


def test_an_unreachable_scanner_is_retried_then_marked_error(user_client, settings, django_capture_on_commit_callbacks):
    settings.CLAMD_URL = "tcp://127.0.0.1:9"  # nothing listens on discard
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "s3": {"base": 0.001, "cap": 0.001, "max_retries": 2}}
    doc = upload(user_client, django_capture_on_commit_callbacks, "a.txt", b"x\n", "text/plain")
    version = DocumentVersion.objects.get()
    assert version.scan_status == "error" and "cannot connect to clamd" in version.scan_detail
    assert Alert.objects.filter(kind="task_failed", provider="clamav").exists()
    settings.DOCUMENT_REQUIRE_SCAN = True
    assert user_client.get(f"{URL}{doc['id']}/download/").json()["error"] == "document_not_scanned"


def test_a_scan_task_for_a_finished_version_does_nothing(user_client, clamd_server, django_capture_on_commit_callbacks):
    upload(user_client, django_capture_on_commit_callbacks, "a.txt", b"x\n", "text/plain")
    version = DocumentVersion.objects.get()
    assert services.version_scan(version_id=version.pk) == "skipped"
    assert len(clamd_server.streams) == 1


def test_clamd_replies_are_parsed():
    assert clamd.parse_reply("stream: OK") == clamd.ScanResult(False, "", "stream: OK")
    assert clamd.parse_reply("stream: Win.Test.EICAR_HDB-1 FOUND").signature == "Win.Test.EICAR_HDB-1"
    with pytest.raises(clamd.ClamdError):
        clamd.parse_reply("INSTREAM size limit exceeded. ERROR")


def test_every_scan_is_a_provider_call_with_its_outcome_latency_and_owner(
    user_client, user, clamd_server, settings, django_capture_on_commit_callbacks
):
    """#10 point 3: a malware scan is an outbound call like any other, logged once per attempt."""
    upload(user_client, django_capture_on_commit_callbacks, "a.txt", b"fine\n", "text/plain")
    upload(user_client, django_capture_on_commit_callbacks, "eicar.txt", EICAR, "text/plain")
    scans = ProviderCall.objects.filter(provider=clamd.PROVIDER).order_by("pk")
    versions = list(DocumentVersion.objects.order_by("pk").values_list("pk", flat=True))
    assert [(c.operation, c.outcome, c.owner_id) for c in scans] == [("scan", "ok", user.pk)] * 2
    assert [c.related_id for c in scans] == [str(pk) for pk in versions]  # each row names the version it scanned
    assert all(c.latency_ms > 0 for c in scans)

    settings.CLAMD_URL = "tcp://127.0.0.1:9"  # nothing listens on discard
    upload(user_client, django_capture_on_commit_callbacks, "b.txt", b"x\n", "text/plain")
    failed = ProviderCall.objects.filter(provider=clamd.PROVIDER).exclude(outcome="ok")
    assert failed.filter(outcome="error").exists()
    assert all("clamd" in c.error_message for c in failed.filter(outcome="error"))
    assert set(failed.values_list("outcome", flat=True)) <= {"error", "circuit_open"}  # the breaker opened too
