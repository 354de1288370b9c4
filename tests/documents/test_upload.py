"""Uploads through the API on the local backend: limits while streaming, content checks, names, quota, rate."""

import io
import os
import re
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.db import connections
from django.http.multipartparser import MultiPartParser
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from documents import services
from documents.models import Document, DocumentVersion
from documents.providers import LocalBackend
from documents.uploads import SizeLimitUploadHandler, UploadTooLarge

from .conftest import EXE, HTML, PDF, PNG, upload_file

pytestmark = pytest.mark.django_db
URL = "/api/v1/documents/"


def post(client, name, content, content_type="application/octet-stream"):
    return client.post(URL, {"file": upload_file(name, content, content_type)}, format="multipart")


def stored_files(settings):
    root = settings.MEDIA_ROOT
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_a_pdf_is_stored_privately_under_a_random_key(user_client, user, settings):
    resp = post(user_client, "report.pdf", PDF, "application/pdf")
    assert resp.status_code == 201, resp.json()
    body = resp.json()
    assert (body["filename"], body["content_type"], body["size"], body["version"]) == (
        "report.pdf",
        "application/pdf",
        len(PDF),
        1,
    )
    version = DocumentVersion.objects.get()
    assert version.document.owner == user and version.backend == "local" and version.storage_class == "LOCAL"
    assert "report" not in version.storage_key and version.storage_key.startswith("documents/")
    [path] = stored_files(settings)
    assert open(path, "rb").read() == PDF
    assert os.stat(path).st_mode & 0o077 == 0  # readable by the hub's user only


def test_without_a_scanner_a_new_version_is_unscanned(user_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post(user_client, "notes.txt", b"hello\n", "text/plain")
    assert DocumentVersion.objects.get().scan_status == "unscanned"


class TestSizeLimit:
    def test_a_body_whose_content_length_is_over_the_limit_is_refused_before_it_is_read(self, user_client, settings):
        settings.DOCUMENT_MAX_BYTES = 200 * 1024
        resp = post(user_client, "big.txt", b"a" * (1024 * 1024), "text/plain")
        assert resp.status_code == 413
        assert resp.json()["error"] == "file_too_large" and resp.json()["limit_bytes"] == 200 * 1024
        assert Document.objects.count() == 0 and stored_files(settings) == []

    def test_a_file_just_over_the_limit_is_stopped_while_streaming(self, user_client, settings):
        settings.DOCUMENT_MAX_BYTES = 200 * 1024
        # within the multipart slack, so Content-Length alone does not give it away
        resp = post(user_client, "big.txt", b"a" * (200 * 1024 + 1), "text/plain")
        assert resp.status_code == 413 and resp.json()["error"] == "file_too_large"
        assert Document.objects.count() == 0 and stored_files(settings) == []

    def test_a_file_exactly_at_the_limit_is_accepted(self, user_client, settings):
        settings.DOCUMENT_MAX_BYTES = 200 * 1024
        assert post(user_client, "ok.txt", b"a" * (200 * 1024), "text/plain").status_code == 201

    def test_a_lying_content_length_does_not_get_past_the_counter(self, rf, user, settings):
        """ASGI servers hand Django the whole body whatever Content-Length says; the handler counts real bytes."""
        limit = 100 * 1024
        body = encode_multipart(BOUNDARY, {"file": upload_file("big.txt", b"a" * (limit * 5), "text/plain")})
        request = rf.get(URL)
        request.user = user
        limiter = SizeLimitUploadHandler(request, lambda r: (limit, "max_bytes"))
        disk = TemporaryFileUploadHandler(request)
        received = []
        original = disk.receive_data_chunk
        disk.receive_data_chunk = lambda data, start: received.append(len(data)) or original(data, start)
        meta = {"CONTENT_TYPE": MULTIPART_CONTENT, "CONTENT_LENGTH": "1000"}  # the lie
        post_data, files = MultiPartParser(
            meta, io.BytesIO(body), [limiter, MemoryFileUploadHandler(request), disk]
        ).parse()
        assert isinstance(limiter.exceeded, UploadTooLarge)
        assert "file" not in files
        assert sum(received) <= limit  # nothing past the limit was written anywhere

    def test_big_uploads_spool_to_disk_instead_of_memory(self, user_client, settings, monkeypatch):
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
        seen = {}
        original = services.versions._store

        def spy(*, owner, upload, sniffed):
            seen["type"] = type(upload)
            return original(owner=owner, upload=upload, sniffed=sniffed)

        monkeypatch.setattr(services.versions, "_store", spy)
        assert post(user_client, "big.txt", b"line\n" * 100_000, "text/plain").status_code == 201
        assert seen["type"] is TemporaryUploadedFile

    def test_the_quota_limits_what_a_user_may_still_upload(self, user_client, client_for, other_user, settings):
        settings.DOCUMENT_USER_QUOTA_BYTES = 1000
        assert post(user_client, "a.txt", b"a" * 600, "text/plain").status_code == 201
        resp = post(user_client, "b.txt", b"b" * 600, "text/plain")
        assert resp.status_code == 413
        assert resp.json()["error"] == "storage_quota_exceeded" and resp.json()["limit_bytes"] == 400
        assert post(client_for(other_user), "c.txt", b"c" * 600, "text/plain").status_code == 201
        assert user_client.get(f"{URL}usage/").json()["bytes"] == 600

    def test_sizes_in_messages_are_binary_megabytes_and_say_so(self, user_client, settings):
        settings.DOCUMENT_USER_QUOTA_BYTES = 3 * 1024 * 1024  # 3 MiB, which is 3.1 MB
        assert post(user_client, "a.txt", b"a" * (2 * 1024 * 1024), "text/plain").status_code == 201
        resp = post(user_client, "b.txt", b"b" * (2 * 1024 * 1024), "text/plain")
        assert resp.status_code == 413
        assert "(1 MiB left)" in resp.json()["detail"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_uploads_at_the_same_moment_cannot_together_pass_the_quota(user, client_for, settings, monkeypatch):
    """600 + 600 bytes against a 1000-byte quota: each upload checks the quota before either is stored and
    counted, so both pass that check; only one may be kept."""
    settings.DOCUMENT_USER_QUOTA_BYTES = 1000
    both_checked = threading.Barrier(2)
    real_save = LocalBackend.save

    def save_once_both_have_checked(self, key, upload, **kwargs):
        both_checked.wait(30)  # neither upload's row exists yet, and each has passed the quota check
        return real_save(self, key, upload, **kwargs)

    monkeypatch.setattr(LocalBackend, "save", save_once_both_have_checked)
    clients = [client_for(user), client_for(user)]

    def one(i):
        try:
            resp = post(clients[i], f"{i}.txt", str(i).encode() * 600, "text/plain")
            return resp.status_code, resp.json().get("error")
        finally:
            connections.close_all()  # this thread's connection, or the test database cannot be dropped

    with ThreadPoolExecutor(2) as pool:
        answers = sorted(pool.map(one, range(2)))

    assert answers == [(201, None), (413, "storage_quota_exceeded")]
    assert DocumentVersion.objects.filter(document__owner=user).count() == 1
    assert services.storage_used(owner=user) == 600


class TestSpoofedTypes:
    def test_an_executable_named_pdf_is_a_415_naming_both_types(self, user_client, settings):
        resp = post(user_client, "invoice.pdf", EXE, "application/pdf")
        assert resp.status_code == 415
        body = resp.json()
        assert body["error"] == "type_mismatch"
        assert (body["detected_type"], body["claimed_type"]) == ("application/x-msdownload", "application/pdf")
        assert "application/x-msdownload" in body["detail"] and "application/pdf" in body["detail"]
        assert stored_files(settings) == []

    def test_html_claiming_to_be_a_png_is_a_415(self, user_client):
        resp = post(user_client, "cat.png", HTML, "image/png")
        assert resp.status_code == 415
        assert (resp.json()["detected_type"], resp.json()["claimed_type"]) == ("text/html", "image/png")

    def test_a_zip_whose_directory_python_cannot_read_is_a_415_not_a_500(self, user_client, settings):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("notes.txt", "hello")
        content = bytearray(buf.getvalue())
        # "Version needed to extract" in the central directory: 25.5, past what zipfile reads.
        content[content.find(b"PK\x01\x02") + 6] = 255
        resp = post(user_client, "report.docx", bytes(content))
        assert resp.status_code == 415, resp.content
        assert (resp.json()["error"], resp.json()["detected_type"]) == ("type_mismatch", "application/zip")
        assert stored_files(settings) == []

    def test_a_real_png_is_accepted_and_typed_from_content(self, user_client):
        resp = post(user_client, "cat.png", PNG, "application/octet-stream")
        assert resp.status_code == 201 and resp.json()["content_type"] == "image/png"


class TestFilenames:
    @pytest.mark.parametrize("name", ["../../../etc/passwd.txt", "..\\..\\boot.txt", "/tmp/x/../../y.txt"])
    def test_path_traversal_names_are_reduced_to_a_plain_name_and_never_reach_the_disk(
        self, user_client, settings, name
    ):
        resp = post(user_client, name, b"hello\n", "text/plain")
        assert resp.status_code == 201
        assert "/" not in resp.json()["filename"] and "\\" not in resp.json()["filename"]
        [path] = stored_files(settings)
        assert os.path.realpath(path).startswith(os.path.realpath(settings.MEDIA_ROOT / "documents"))
        assert re.fullmatch(r"documents/[0-9a-f]{2}/[0-9a-f]{32}", os.path.relpath(path, settings.MEDIA_ROOT))

    @pytest.mark.parametrize("name,expected", [(".pdf", "document.pdf"), (" ..PDF ", "document.PDF")])
    def test_a_name_that_is_only_an_extension_keeps_it_under_a_default_stem(self, user_client, name, expected):
        resp = post(user_client, name, PDF, "application/pdf")
        assert resp.status_code == 201, resp.json()
        assert (resp.json()["filename"], resp.json()["content_type"]) == (expected, "application/pdf")
        link = user_client.get(f"{URL}{resp.json()['id']}/download/").json()
        assert link["filename"] == expected

    def test_an_executable_named_only_dot_pdf_is_refused_by_that_extension(self, user_client, settings):
        resp = post(user_client, ".pdf", EXE)
        assert resp.status_code == 415
        assert (resp.json()["error"], resp.json()["extension"]) == ("type_mismatch", "pdf")
        assert stored_files(settings) == []

    def test_a_bare_unknown_extension_is_judged_like_any_other_extension(self, user_client):
        # ".hidden" is what "notes.hidden" would be without its stem: refused with the same advice.
        resp = post(user_client, ".hidden", b"hello\n", "text/plain")
        assert resp.status_code == 415
        assert (resp.json()["error"], resp.json()["extension"]) == ("type_mismatch", "hidden")
        assert "rename it" in resp.json()["detail"]
        assert post(user_client, "notes.hidden", b"hello\n", "text/plain").json() == resp.json()


def test_a_request_without_a_file_is_a_400(user_client):
    resp = user_client.post(URL, {"other": "x"}, format="multipart")
    assert resp.status_code == 400 and resp.json()["error"] == "file_required"


def test_the_31st_upload_in_a_minute_is_a_json_429(user_client, client_for, other_user, still_clock):
    codes = [post(user_client, f"n{i}.txt", b"x\n", "text/plain").status_code for i in range(31)]
    assert codes[:30] == [201] * 30
    assert codes[30] == 429
    assert Document.objects.count() == 30
    assert post(client_for(other_user), "n.txt", b"x\n", "text/plain").status_code == 201


def test_uploads_need_authentication(api_client):
    assert post(api_client, "a.txt", b"x", "text/plain").status_code == 401


def test_a_retried_upload_with_the_same_idempotency_key_stores_one_document(user_client, settings):
    first = user_client.post(
        URL, {"file": upload_file("a.txt", b"hello\n", "text/plain")}, format="multipart", HTTP_IDEMPOTENCY_KEY="up-1"
    )
    again = user_client.post(
        URL, {"file": upload_file("a.txt", b"hello\n", "text/plain")}, format="multipart", HTTP_IDEMPOTENCY_KEY="up-1"
    )
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert Document.objects.count() == 1 and len(stored_files(settings)) == 1
    other = user_client.post(
        URL, {"file": upload_file("a.txt", b"other\n", "text/plain")}, format="multipart", HTTP_IDEMPOTENCY_KEY="up-1"
    )
    assert other.status_code == 422
