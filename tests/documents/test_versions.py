"""Versions: add, list, download any, restore; deletes and the orphan sweep."""

import datetime as dt
import os

import pytest
from django.utils import timezone

from documents import services
from documents.models import Document, DocumentVersion
from documents.providers import LocalBackend

from .conftest import docx_bytes
from .helpers import URL, post, post_version

pytestmark = pytest.mark.django_db


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture
def document(user_client):
    return post(user_client, "plan.txt", b"version one\n", "text/plain").json()


def download(client, api_client, doc_id, number=None):
    url = f"{URL}{doc_id}/versions/{number}/download/" if number else f"{URL}{doc_id}/download/"
    body = client.get(url).json()
    return b"".join(api_client.get(body["url"].split("testserver", 1)[1]).streaming_content)


def test_a_new_version_becomes_current_and_older_ones_stay_downloadable(user_client, api_client, document):
    resp = post_version(user_client, document["id"], "plan-v2.txt", b"version two\n", "text/plain")
    assert resp.status_code == 201 and resp.json()["number"] == 2 and resp.json()["is_current"]
    versions = user_client.get(f"{URL}{document['id']}/versions/").json()
    assert [(v["number"], v["filename"], v["is_current"]) for v in versions] == [
        (2, "plan-v2.txt", True),
        (1, "plan.txt", False),
    ]
    detail = user_client.get(f"{URL}{document['id']}/").json()
    assert (detail["version"], detail["versions_count"], detail["filename"]) == (2, 2, "plan-v2.txt")
    assert download(user_client, api_client, document["id"]) == b"version two\n"
    assert download(user_client, api_client, document["id"], 1) == b"version one\n"


def test_a_new_version_may_change_type_but_is_still_checked(user_client, document):
    assert post_version(user_client, document["id"], "plan.docx", docx_bytes()).status_code == 201
    resp = post_version(user_client, document["id"], "plan.pdf", b"MZ" + b"\0" * 100, "application/pdf")
    assert resp.status_code == 415


def test_restoring_makes_an_old_version_current(user_client, api_client, document):
    post_version(user_client, document["id"], "plan.txt", b"version two\n", "text/plain")
    resp = user_client.post(f"{URL}{document['id']}/versions/1/restore/")
    assert resp.status_code == 200 and resp.json()["version"] == 1
    assert download(user_client, api_client, document["id"]) == b"version one\n"
    # versions are never rewritten: both are still there
    assert DocumentVersion.objects.count() == 2
    assert post_version(user_client, document["id"], "plan.txt", b"three\n", "text/plain").json()["number"] == 3


def test_restoring_an_unknown_version_is_a_404(user_client, document):
    assert user_client.post(f"{URL}{document['id']}/versions/9/restore/").status_code == 404


def test_restoring_a_quarantined_version_is_refused(user_client, document):
    post_version(user_client, document["id"], "plan.txt", b"version two\n", "text/plain")
    DocumentVersion.objects.filter(number=1).update(scan_status="infected", scan_detail="Eicar-Test-Signature")
    resp = user_client.post(f"{URL}{document['id']}/versions/1/restore/")
    assert resp.status_code == 403 and resp.json()["error"] == "document_infected"


class TestDelete:
    def test_delete_hides_the_document_at_once_and_a_task_removes_every_stored_version(
        self, user_client, document, settings, django_capture_on_commit_callbacks
    ):
        post_version(user_client, document["id"], "plan.txt", b"version two\n", "text/plain")
        assert len(files_under(settings.MEDIA_ROOT)) == 2
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert user_client.delete(f"{URL}{document['id']}/").status_code == 204
        # metadata is gone for the client before the objects are
        assert user_client.get(f"{URL}{document['id']}/").status_code == 404
        assert user_client.get(URL).json()["count"] == 0
        assert len(files_under(settings.MEDIA_ROOT)) == 2
        for callback in callbacks:
            callback()
        assert files_under(settings.MEDIA_ROOT) == []
        assert Document.objects.count() == 0 and DocumentVersion.objects.count() == 0

    def test_deleting_twice_is_a_404_the_second_time(self, user_client, document):
        assert user_client.delete(f"{URL}{document['id']}/").status_code == 204
        assert user_client.delete(f"{URL}{document['id']}/").status_code == 404

    def test_the_purge_is_harmless_to_repeat(self, user_client, document):
        user_client.delete(f"{URL}{document['id']}/")
        assert services.document_purge(document_id=document["id"]) == "purged"
        assert services.document_purge(document_id=document["id"]) == "skipped"


class TestOrphanSweep:
    def test_it_removes_old_objects_no_row_names_and_keeps_the_rest(self, user_client, document, settings):
        backend = LocalBackend()
        from django.core.files.base import ContentFile

        backend.save("documents/ff/orphan-old", ContentFile(b"x"), content_type="text/plain", size=1)
        backend.save("documents/ff/orphan-new", ContentFile(b"y"), content_type="text/plain", size=1)
        old = (timezone.now() - dt.timedelta(hours=3)).timestamp()
        os.utime(backend.path("documents/ff/orphan-old"), (old, old))
        version_key = DocumentVersion.objects.get().storage_key
        os.utime(backend.path(version_key), (old, old))  # old, but a row names it

        result = services.orphans_sweep()

        assert result["removed"] == ["documents/ff/orphan-old"]
        assert files_under(settings.MEDIA_ROOT) == sorted([version_key, "documents/ff/orphan-new"])

    def test_it_requeues_a_purge_that_was_lost(
        self, user_client, document, settings, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=False):
            user_client.delete(f"{URL}{document['id']}/")  # the purge task never ran
        Document.objects.update(deleted_at=timezone.now() - dt.timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            result = services.orphans_sweep()
        assert result["requeued"] == [document["id"]]
        assert Document.objects.count() == 0 and files_under(settings.MEDIA_ROOT) == []

    def test_the_sweep_is_scheduled_on_beat(self, settings):
        assert settings.CELERY_BEAT_SCHEDULE["documents.sweep_orphans"]["task"] == "documents.sweep_orphans"
