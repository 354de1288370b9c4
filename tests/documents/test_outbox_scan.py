"""No scan stalls or is lost (issue 17 point 5): a broker error after the upload committed, a
worker killed mid-scan and a lost message each delay the scan by at most the sweep interval."""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from documents.models import Document, DocumentVersion
from tests.integrations.outbox_kit import broker_down, eager_tasks, make_overdue, next_attempt, sweep

from .helpers import post

pytestmark = pytest.mark.django_db

SCAN = {"documents.version_scan": 1}


@pytest.fixture
def queued_tasks():
    """Tasks go to the broker (the test's in-memory one, never consumed) instead of running inline."""
    from config.celery import app as celery_app

    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = previous


def upload(client, capture):
    with capture(execute=True):
        response = post(client, "report.txt", b"quarterly numbers\n", "text/plain")
    assert response.status_code == 201, response.content
    return DocumentVersion.objects.get(document_id=response.json()["id"])


def test_a_broker_error_after_the_upload_still_answers_201_and_the_sweeper_scans_it(
    user_client, clamd_server, queued_tasks, django_capture_on_commit_callbacks
):
    with broker_down():
        version = upload(user_client, django_capture_on_commit_callbacks)
    assert version.scan_status == "pending" and clamd_server.streams == []
    assert next_attempt(version) <= timezone.now()
    assert sweep()["sent"] == SCAN
    version.refresh_from_db()
    assert (version.scan_status, version.next_attempt_at) == ("clean", None)
    assert clamd_server.streams == [b"quarterly numbers\n"]


def test_a_lost_scan_message_is_sent_again_after_the_grace(
    user_client, clamd_server, queued_tasks, settings, django_capture_on_commit_callbacks
):
    version = upload(user_client, django_capture_on_commit_callbacks)  # queued, never consumed: lost
    assert sweep()["sent"] == {}
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=settings.OUTBOX_GRACE_SECONDS + 1)):
        assert sweep()["sent"] == SCAN
    version.refresh_from_db()
    assert version.scan_status == "clean" and len(clamd_server.streams) == 1


def test_a_scan_killed_mid_run_is_scanned_again_once(user_client, clamd_server, django_capture_on_commit_callbacks):
    with eager_tasks():
        version = upload(user_client, django_capture_on_commit_callbacks)
    clamd_server.streams.clear()
    # A worker took it to `scanning` and died; its lease ran out.
    DocumentVersion.objects.filter(pk=version.pk).update(scan_status="scanning", scanned_at=None)
    make_overdue(version)
    assert sweep()["sent"] == SCAN
    version.refresh_from_db()
    assert (version.scan_status, version.next_attempt_at) == ("clean", None)
    assert len(clamd_server.streams) == 1
    assert sweep()["sent"] == {}


def test_a_purge_that_gave_up_is_tried_again_after_the_longest_backoff(
    user_client, clamd_server, queued_tasks, settings, django_capture_on_commit_callbacks
):
    from documents.tasks import document_purge
    from integrations.outbox import gave_up, kind_for

    version = upload(user_client, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        user_client.delete(f"/api/v1/documents/{version.document_id}/")
    document = Document.objects.get(pk=version.document_id)
    gave_up(kind_for(document_purge), document.pk)  # removing objects is safe to repeat: not dropped
    later = next_attempt(document)
    assert later >= timezone.now() + dt.timedelta(seconds=settings.OUTBOX_BACKOFF_MAX_SECONDS - 5)
    assert sweep()["sent"] == {}
    with time_machine.travel(later + dt.timedelta(seconds=1)):
        assert sweep()["sent"]["documents.document_purge"] == 1
    assert not Document.objects.filter(pk=document.pk).exists()


def test_a_deleted_document_whose_purge_was_lost_is_purged_by_the_sweeper(
    user_client, clamd_server, queued_tasks, django_capture_on_commit_callbacks
):
    version = upload(user_client, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert user_client.delete(f"/api/v1/documents/{version.document_id}/").status_code == 204
    document = Document.objects.get(pk=version.document_id)
    assert document.state == "deleting"
    make_overdue(document)
    sent = sweep()["sent"]
    assert sent["documents.document_purge"] == 1
    assert not Document.objects.filter(pk=document.pk).exists()
