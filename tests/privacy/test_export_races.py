"""Export racing the documents' purge: a file deleted between the export listing it and reading it is left out
(and said so), while a file missing for any other reason, or a storage that refuses, still fails the export."""

import io
import json
import zipfile

import pytest

from documents import tasks
from documents.models import DocumentVersion
from documents.providers import LocalBackend, S3Backend
from integrations.models import ProviderCall
from privacy.models import Export
from tests.documents.factories import DocumentFactory, DocumentVersionFactory
from tests.documents.test_s3 import s3_clients, s3_error

from .conftest import BUCKET, _store

pytestmark = pytest.mark.django_db


@pytest.fixture
def export(django_capture_on_commit_callbacks, client_for, eager):
    """The owner asks for an export through the API; the build task runs at once. The Export row, refreshed."""

    def run(user):
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(user).post("/api/v1/privacy/export/", {}, format="json")
        assert response.status_code == 202
        return Export.objects.get(pk=response.json()["id"])

    return run


def documents_of(user, *names):
    """One stored document per name, current version 1; {name: version}."""
    made = {}
    for name in names:
        content = f"the bytes of {name}\n".encode()
        key = f"documents/race/{user.pk}-{name}"
        version = DocumentVersionFactory(
            document=DocumentFactory(owner=user),
            number=1,
            filename=name,
            size=len(content),
            backend=_store(key, content),
            storage_key=key,
        )
        version.document.current_version = version
        version.document.save()
        made[name] = version
    return made


@pytest.fixture
def deleted_mid_export(monkeypatch, client_for, django_capture_on_commit_callbacks):
    """Just before the export reads `version`'s bytes, its owner deletes the document and the purge task runs."""

    def arm(backend_class, version):
        read_into = backend_class.read_into

        def racing_read_into(self, key, consume, **kwargs):
            if key == version.storage_key and DocumentVersion.objects.filter(pk=version.pk).exists():
                with django_capture_on_commit_callbacks(execute=True):
                    owner = client_for(version.document.owner)
                    assert owner.delete(f"/api/v1/documents/{version.document_id}/").status_code == 204
                assert not DocumentVersion.objects.filter(pk=version.pk).exists()  # purged: object and row
            return read_into(self, key, consume, **kwargs)

        monkeypatch.setattr(backend_class, "read_into", racing_read_into)

    return arm


def downloaded(client, row):
    """The zip as its owner downloads it through the export's link."""
    url = client.get(f"/api/v1/privacy/exports/{row.pk}/").json()["download"]["url"]
    return zipfile.ZipFile(io.BytesIO(b"".join(client.get(url[url.index("/api/") :]).streaming_content)))


def assert_left_out(row, zf, gone, kept):
    names = zf.namelist()
    assert f"documents/{kept.document_id}/v1-{kept.filename}" in names
    assert not any(n.startswith(f"documents/{gone.document_id}/") for n in names)
    # ids only: the manifest holds no personal data, so no file name
    assert row.manifest["omitted"] == [
        {"app": "documents", "document_id": gone.document_id, "version": 1, "reason": "deleted"}
    ]
    assert gone.filename not in json.dumps(row.manifest)
    readme = zf.read("README.txt").decode()
    assert f"documents/{gone.document_id}/v1-{gone.filename}" in readme and "deleted while" in readme


def test_a_document_purged_while_the_export_runs_is_left_out_and_noted(user, export, deleted_mid_export, client_for):
    versions = documents_of(user, "gone.txt", "kept.txt")
    deleted_mid_export(LocalBackend, versions["gone.txt"])

    row = export(user)

    assert row.status == "ready", row.error
    assert_left_out(row, downloaded(client_for(user), row), versions["gone.txt"], versions["kept.txt"])


def test_on_s3_a_document_purged_while_the_export_runs_is_left_out_and_noted(user, export, deleted_mid_export, s3):
    versions = documents_of(user, "gone.txt", "kept.txt")
    deleted_mid_export(S3Backend, versions["gone.txt"])

    row = export(user)

    assert row.status == "ready", row.error
    zf = zipfile.ZipFile(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=row.storage_key)["Body"].read()))
    assert_left_out(row, zf, versions["gone.txt"], versions["kept.txt"])


def test_a_version_quarantined_while_the_export_runs_is_left_out_as_infected(user, export, monkeypatch, client_for):
    versions = documents_of(user, "eicar.txt", "kept.txt")
    infected = versions["eicar.txt"]
    read_into = LocalBackend.read_into

    def scanned_meanwhile(self, key, consume, **kwargs):
        if key == infected.storage_key:
            # what the scan does on finding malware: mark the version, then move its object to quarantine
            DocumentVersion.objects.filter(pk=infected.pk).update(scan_status="infected", scan_detail="Eicar-Test")
            tasks.version_quarantine.delay(infected.pk)
            assert DocumentVersion.objects.get(pk=infected.pk).quarantined_at is not None
        return read_into(self, key, consume, **kwargs)

    monkeypatch.setattr(LocalBackend, "read_into", scanned_meanwhile)

    row = export(user)

    assert row.status == "ready", row.error
    assert row.manifest["omitted"] == [
        {"app": "documents", "document_id": infected.document_id, "version": 1, "reason": "infected"}
    ]
    zf = downloaded(client_for(user), row)
    assert f"documents/{versions['kept.txt'].document_id}/v1-kept.txt" in zf.namelist()
    assert "malware" in zf.read("README.txt").decode()


def test_a_file_missing_under_a_live_document_still_fails_the_export(user, export, settings):
    """Not a race: the row says the file is there (a worker without the shared disk, a lost file). Say so."""
    versions = documents_of(user, "lost.txt")
    (settings.MEDIA_ROOT / versions["lost.txt"].storage_key).unlink()

    row = export(user)

    assert row.status == "failed" and "No such file" in row.error
    assert "omitted" not in row.manifest


@pytest.mark.parametrize("status,code", [(403, "AccessDenied"), (404, "NoSuchBucket"), (503, "SlowDown")])
def test_on_s3_a_refusal_or_outage_still_fails_the_export(user, export, s3, status, code):
    documents_of(user, "kept.txt")

    def refuse(request, **kwargs):
        return s3_error(request, status, code)

    clients = s3_clients()
    for client in clients:
        client.meta.events.register_first("before-send.s3.GetObject", refuse)
    try:
        row = export(user)
    finally:
        for client in clients:
            client.meta.events.unregister("before-send.s3.GetObject", refuse)

    assert row.status == "failed" and row.error == f"injected {status}"
    # the outage is retried as before (two retries in these tests), the refusals are not
    gets = ProviderCall.objects.filter(provider="s3", operation="get").count()
    assert gets == (3 if status == 503 else 1)
