"""The S3 backend on moto: the real django-storages and boto3 code, HTTP answered in-process."""

import datetime as dt
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
from botocore.awsrequest import AWSResponse
from django.core.management import CommandError, call_command

from documents import providers, services
from documents.models import Document, DocumentVersion
from integrations.models import ProviderCall

from .conftest import BUCKET, EICAR, PDF
from .helpers import URL, post, post_version

pytestmark = pytest.mark.django_db


class _Raw:
    def __init__(self, body):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def s3_error(request, status, code="InternalError"):
    body = f"<Error><Code>{code}</Code><Message>injected {status}</Message><RequestId>REQ{status}</RequestId></Error>"
    return AWSResponse(request.url, status, {"x-amz-request-id": f"REQ{status}"}, _Raw(body.encode()))


def s3_clients():
    """The hub's boto3 clients for web requests and for tasks (they differ in timeouts)."""
    from integrations import gateway

    web = providers._storage().connection.meta.client
    with gateway.task_context():
        task = providers._storage().connection.meta.client
    return [web, task]


def test_an_upload_is_stored_private_and_encrypted_with_the_type_from_content(user_client, s3):
    resp = post(user_client, "report.pdf", PDF, "application/octet-stream")
    assert resp.status_code == 201, resp.json()
    version = DocumentVersion.objects.get()
    assert version.backend == "s3" and version.storage_class == "STANDARD"
    head = s3.head_object(Bucket=BUCKET, Key=version.storage_key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/pdf"
    assert s3.get_object(Bucket=BUCKET, Key=version.storage_key)["Body"].read() == PDF
    grants = s3.get_object_acl(Bucket=BUCKET, Key=version.storage_key)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner only
    assert not any("AllUsers" in g["Grantee"].get("URI", "") for g in grants)


def test_each_s3_request_is_logged_by_the_gateway_with_bytes_and_cost(user_client, user, s3):
    post(user_client, "report.pdf", PDF, "application/pdf")
    call = ProviderCall.objects.get()
    assert (call.provider, call.operation, call.outcome, call.owner) == ("s3", "put", "ok", user)
    assert call.units == {"bytes_in": len(PDF), "requests": 1}
    assert call.cost_usd == Decimal("0.000005")


def test_large_files_go_up_in_multipart_parts(user_client, s3, settings):
    settings.S3_MULTIPART_THRESHOLD_BYTES = 5 * 1024 * 1024
    settings.S3_MULTIPART_CHUNK_BYTES = 5 * 1024 * 1024
    settings.DOCUMENT_MAX_BYTES = 20 * 1024 * 1024
    data = b"a,b,c\n" * (2 * 1024 * 1024)  # 12 MiB of CSV -> 3 parts
    resp = post(user_client, "big.csv", data, "text/csv")
    assert resp.status_code == 201, resp.json()
    version = DocumentVersion.objects.get()
    head = s3.head_object(Bucket=BUCKET, Key=version.storage_key)
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    assert ProviderCall.objects.get().units == {"bytes_in": len(data), "requests": 5}


def test_the_transfer_config_bounds_memory_to_the_part_size(settings, s3):
    settings.S3_MAX_CONCURRENCY = 2
    config = providers._storage().transfer_config
    assert config.multipart_chunksize == settings.S3_MULTIPART_CHUNK_BYTES
    assert config.max_request_concurrency == 2 and config.max_in_memory_upload_chunks == 2


def test_the_download_link_is_presigned_with_the_ttl_and_the_original_filename(user_client, s3, settings):
    settings.DOCUMENT_URL_TTL_SECONDS = 120
    doc = post(user_client, "Budget 2030 ü.pdf", PDF, "application/pdf").json()
    body = user_client.get(f"{URL}{doc['id']}/download/").json()
    query = parse_qs(urlparse(body["url"]).query)
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["response-content-disposition"][0].startswith("attachment;")
    assert "filename*=utf-8''Budget%202030%20%C3%BC.pdf" in query["response-content-disposition"][0]
    assert query["response-content-type"] == ["application/pdf"]
    assert DocumentVersion.objects.get().storage_key in urlparse(body["url"]).path
    # the URL is not a permanent public one: the object itself refuses anonymous reads
    assert parse_qs(urlparse(body["url"]).query).get("X-Amz-Signature")


def test_the_endpoint_url_setting_points_the_client_elsewhere(settings, s3):
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:5999"
    settings.AWS_S3_ADDRESSING_STYLE = "path"
    url = providers.S3Backend().signed_url(
        "documents/aa/x", filename_disposition="attachment", content_type="text/plain", ttl=60
    )
    assert url.startswith(f"http://127.0.0.1:5999/{BUCKET}/documents/aa/x?")


def test_boto3_makes_one_attempt_only_the_gateway_and_celery_retry(user_client, s3):
    """A 500 from S3 is sent once, logged once, and answered 502 with nothing left behind."""
    client = providers._storage().connection.meta.client
    sent = []

    def fail(request, **kwargs):
        sent.append(request.url)
        return s3_error(request, 500)

    client.meta.events.register_first("before-send.s3.PutObject", fail)
    try:
        resp = post(user_client, "report.pdf", PDF, "application/pdf")
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", fail)
    assert len(sent) == 1
    assert resp.status_code == 502 and resp.json()["provider"] == "s3"
    call = ProviderCall.objects.get()
    assert (call.outcome, call.http_status, call.retryable) == ("error", 500, True)
    assert Document.objects.count() == 0


def test_an_unconfigured_s3_is_a_503_naming_the_missing_settings(user_client, settings):
    settings.S3_BUCKET = "hub-documents"  # S3 chosen, but no credentials
    resp = post(user_client, "report.pdf", PDF, "application/pdf")
    assert resp.status_code == 503
    assert resp.json()["error"] == "provider_not_configured"
    assert resp.json()["missing"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]


def test_versions_and_restore_work_on_s3(user_client, s3):
    doc = post(user_client, "a.txt", b"one\n", "text/plain").json()
    post_version(user_client, doc["id"], "a.txt", b"two\n", "text/plain")
    user_client.post(f"{URL}{doc['id']}/versions/1/restore/")
    key = Document.objects.get().current_version.storage_key
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"one\n"


def test_delete_removes_every_object_from_the_bucket(user_client, s3, django_capture_on_commit_callbacks):
    doc = post(user_client, "a.txt", b"one\n", "text/plain").json()
    post_version(user_client, doc["id"], "a.txt", b"two\n", "text/plain")
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert user_client.delete(f"{URL}{doc['id']}/").status_code == 204
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert Document.objects.count() == 0
    assert ProviderCall.objects.filter(operation="delete", outcome="ok").count() == 2


def object_versions(s3, prefix=""):
    """Every object version and delete marker in the bucket, as (key, kind)."""
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return sorted(
        [(v["Key"], "version") for v in listed.get("Versions", [])]
        + [(m["Key"], "delete marker") for m in listed.get("DeleteMarkers", [])]
    )


def test_on_a_versioned_bucket_delete_leaves_no_object_version_behind(
    user_client, s3, django_capture_on_commit_callbacks
):
    """The README asks for bucket versioning; a plain DeleteObject there only hides the bytes behind a marker."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    doc = post(user_client, "a.txt", b"one\n", "text/plain").json()
    post_version(user_client, doc["id"], "a.txt", b"two\n", "text/plain")
    assert [kind for _, kind in object_versions(s3)] == ["version", "version"]
    with django_capture_on_commit_callbacks(execute=True):
        assert user_client.delete(f"{URL}{doc['id']}/").status_code == 204
    assert Document.objects.count() == 0
    assert object_versions(s3) == []


def test_a_failed_purge_is_retried_by_celery(user_client, s3, settings, django_capture_on_commit_callbacks):
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "s3": {"base": 0.001, "cap": 0.001, "max_retries": 3}}
    doc = post(user_client, "a.txt", b"one\n", "text/plain").json()
    [client] = s3_clients()[1:]
    failures = [503]

    def flaky(request, **kwargs):
        if failures:
            return s3_error(request, failures.pop(), "SlowDown")
        return None

    client.meta.events.register_first("before-send.s3.DeleteObject", flaky)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            user_client.delete(f"{URL}{doc['id']}/")
    finally:
        client.meta.events.unregister("before-send.s3.DeleteObject", flaky)
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert list(ProviderCall.objects.filter(operation="delete").order_by("id").values_list("attempt", "outcome")) == [
        (1, "error"),
        (2, "ok"),
    ]


def test_the_orphan_sweep_removes_old_unknown_objects_from_the_bucket(user_client, s3, settings):
    post(user_client, "a.txt", b"one\n", "text/plain")
    s3.put_object(Bucket=BUCKET, Key="documents/zz/orphan", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/not-ours", Body=b"x")
    # every object is younger than the grace period: nothing goes
    assert services.orphans_sweep()["removed"] == []
    result = services.orphans_sweep(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert result["removed"] == ["documents/zz/orphan"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {DocumentVersion.objects.get().storage_key, "elsewhere/not-ours"}


@pytest.mark.parametrize("adding_a_version", [False, True])
def test_an_upload_the_quota_recheck_refuses_leaves_no_object_in_the_bucket(
    user_client, user, s3, settings, monkeypatch, adding_a_version
):
    """Another upload of the owner's wrote its row while this one's bytes went up: the recheck under the owner's
    lock refuses this one, and its object goes at once, not at the orphan sweep (on a versioned bucket too)."""
    from documents.providers import S3Backend

    from .factories import DocumentVersionFactory

    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    settings.DOCUMENT_USER_QUOTA_BYTES = 1000
    doc = post(user_client, "a.txt", b"a", "text/plain").json() if adding_a_version else None
    kept = object_versions(s3)
    real_save = S3Backend.save

    def save_while_another_upload_is_counted(self, key, upload, **kwargs):
        stored = real_save(self, key, upload, **kwargs)
        DocumentVersionFactory(document__owner=user, size=600, backend="s3", storage_key="documents/zz/other")
        return stored

    monkeypatch.setattr(S3Backend, "save", save_while_another_upload_is_counted)
    content = b"b" * 600
    resp = (
        post_version(user_client, doc["id"], "b.txt", content, "text/plain")
        if adding_a_version
        else post(user_client, "b.txt", content, "text/plain")
    )
    assert resp.status_code == 413 and resp.json()["error"] == "storage_quota_exceeded"
    assert DocumentVersion.objects.filter(size=600).values_list("storage_key", flat=True).get() == "documents/zz/other"
    assert object_versions(s3) == kept  # the refused upload's bytes are gone, every version of them


def test_a_version_whose_document_was_deleted_while_it_went_up_leaves_no_object_in_the_bucket(
    user_client, s3, monkeypatch
):
    from documents.providers import S3Backend

    doc = post(user_client, "a.txt", b"a", "text/plain").json()
    kept = object_versions(s3)
    real_save = S3Backend.save

    def save_while_the_document_is_deleted(self, key, upload, **kwargs):
        stored = real_save(self, key, upload, **kwargs)
        Document.objects.filter(pk=doc["id"]).update(state=Document.State.DELETING)
        return stored

    monkeypatch.setattr(S3Backend, "save", save_while_the_document_is_deleted)
    resp = post_version(user_client, doc["id"], "b.txt", b"b", "text/plain")
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    assert object_versions(s3) == kept


def test_eicar_on_s3_is_streamed_from_the_bucket_and_quarantined(
    user_client, s3, clamd_server, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        doc = post(user_client, "eicar.txt", EICAR, "text/plain").json()
    assert DocumentVersion.objects.get().scan_status == "infected"
    assert clamd_server.streams == [EICAR]
    get = ProviderCall.objects.get(operation="get")
    assert get.units == {"bytes_out": len(EICAR), "requests": 1}
    assert user_client.get(f"{URL}{doc['id']}/download/").status_code == 403


class TestLifecycle:
    def test_the_command_applies_the_rules_from_settings(self, s3, settings, capsys):
        settings.S3_LIFECYCLE_IA_DAYS = 45
        settings.S3_LIFECYCLE_ARCHIVE_DAYS = 365
        settings.S3_LIFECYCLE_ABORT_MULTIPART_DAYS = 3
        settings.S3_LIFECYCLE_NONCURRENT_DAYS = 60
        call_command("configure_bucket_lifecycle")
        [rule] = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
        assert rule["Filter"] == {"Prefix": "documents/"} and rule["Status"] == "Enabled"
        assert [(t["Days"], t["StorageClass"]) for t in rule["Transitions"]] == [
            (45, "STANDARD_IA"),
            (365, "GLACIER_IR"),
        ]
        assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 60
        assert rule["Expiration"] == {"ExpiredObjectDeleteMarker": True}
        assert ProviderCall.objects.get().operation == "lifecycle.put"

    def test_by_default_delete_markers_expire_and_crashed_multipart_uploads_are_aborted_after_a_day(self, s3):
        call_command("configure_bucket_lifecycle")
        [rule] = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
        assert rule["Expiration"] == {"ExpiredObjectDeleteMarker": True}
        assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

    def test_an_impossible_transition_is_refused_before_calling_s3(self, s3, settings):
        settings.S3_LIFECYCLE_IA_DAYS = 7
        with pytest.raises(CommandError, match="30 days"):
            call_command("configure_bucket_lifecycle")
        assert ProviderCall.objects.count() == 0

    def test_without_s3_the_command_says_what_is_missing(self):
        with pytest.raises(CommandError, match="S3_BUCKET"):
            call_command("configure_bucket_lifecycle")

    def test_rows_show_the_storage_class_s3_reports(self, user_client, s3):
        doc = post(user_client, "a.txt", b"one\n", "text/plain").json()
        assert doc["storage_class"] == "STANDARD"
        version = DocumentVersion.objects.get()
        # what a lifecycle transition does on S3's side
        s3.copy_object(
            Bucket=BUCKET,
            Key=version.storage_key,
            CopySource={"Bucket": BUCKET, "Key": version.storage_key},
            StorageClass="STANDARD_IA",
            ServerSideEncryption="AES256",
        )
        assert services.version_refresh_storage_class(version=version) == "STANDARD_IA"
        assert user_client.get(f"{URL}{doc['id']}/").json()["storage_class"] == "STANDARD_IA"
        usage = user_client.get(f"{URL}usage/").json()
        assert usage["by_storage_class"][0]["storage_class"] == "STANDARD_IA"


class TestAdminActions:
    def test_refreshing_storage_classes_goes_on_past_an_object_s3_no_longer_has(
        self, user_client, client, staff_user, s3
    ):
        """A provider failure on one row is a warning naming that row; the others are refreshed and logged."""
        from django.contrib.admin.models import LogEntry
        from django.contrib.messages import get_messages

        for name in ("kept.txt", "gone.txt"):
            post(user_client, name, b"one\n", "text/plain")
        kept, gone = DocumentVersion.objects.order_by("pk")
        s3.copy_object(
            Bucket=BUCKET,
            Key=kept.storage_key,
            CopySource={"Bucket": BUCKET, "Key": kept.storage_key},
            StorageClass="STANDARD_IA",
            ServerSideEncryption="AES256",
        )
        s3.delete_object(Bucket=BUCKET, Key=gone.storage_key)
        client.force_login(staff_user)
        resp = client.post(
            "/admin/documents/documentversion/",
            {"action": "refresh_storage_class", "_selected_action": [kept.pk, gone.pk]},
        )
        assert resp.status_code == 302
        shown = [str(m) for m in get_messages(resp.wsgi_request)]
        assert any(text.startswith(f"Document version {gone.pk}: ") for text in shown), shown
        assert "Storage class refreshed for 1 version(s)." in shown
        assert DocumentVersion.objects.get(pk=kept.pk).storage_class == "STANDARD_IA"
        logged = LogEntry.objects.filter(object_id__in=[str(kept.pk), str(gone.pk)])
        assert [entry.object_id for entry in logged] == [str(kept.pk)]  # who refreshed what, for the row done
