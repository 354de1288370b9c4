"""Infected objects are moved under DOCUMENT_QUARANTINE_PREFIX, on S3 (moto) and on the filesystem."""

import datetime as dt
import io
import os
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.utils import timezone

from documents import providers, services, tasks
from documents.models import Document, DocumentVersion
from integrations.models import ProviderCall

from .conftest import BUCKET, EICAR
from .helpers import URL, post, post_version
from .test_s3 import object_versions, s3_clients, s3_error

pytestmark = pytest.mark.django_db

LATER = dt.timedelta(days=1)  # past the sweep's grace period


def upload_infected(client, capture, name="eicar.txt", content=EICAR):
    with capture(execute=True):
        resp = post(client, name, content, "text/plain")
    assert resp.status_code == 201, resp.json()
    return resp.json()


def keys_in(s3):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", ()))


def files_under(root):
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class TestOnS3:
    def test_an_infected_upload_is_moved_to_the_quarantine_prefix_tagged_private_and_encrypted(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        doc = upload_infected(user_client, django_capture_on_commit_callbacks)
        version = DocumentVersion.objects.get()
        original = version.storage_key[len("quarantine/") :]
        assert version.storage_key == f"quarantine/{original}" and original.startswith("documents/")
        assert version.quarantined_at is not None and version.scan_status == "infected"
        assert keys_in(s3) == [version.storage_key]
        with pytest.raises(ClientError, match="NoSuchKey"):
            s3.get_object(Bucket=BUCKET, Key=original)

        head = s3.head_object(Bucket=BUCKET, Key=version.storage_key)
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ContentType"] == "text/plain"
        assert s3.get_object(Bucket=BUCKET, Key=version.storage_key)["Body"].read() == EICAR
        tags = s3.get_object_tagging(Bucket=BUCKET, Key=version.storage_key)["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"hub-scan": "infected", "hub-signature": "Eicar-Test-Signature"}
        grants = s3.get_object_acl(Bucket=BUCKET, Key=version.storage_key)["Grants"]
        assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]

        resp = user_client.get(f"{URL}{doc['id']}/download/")
        assert resp.status_code == 403 and resp.json()["error"] == "document_infected"
        # every S3 request of the move went through the gateway
        copy = ProviderCall.objects.get(operation="copy")
        assert copy.outcome == "ok" and copy.units == {"requests": 1, "bytes_copied": len(EICAR)}
        assert ProviderCall.objects.filter(operation="delete", outcome="ok").count() == 1

    def test_a_presigned_url_handed_out_before_the_scan_stops_working(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=False):
            doc = post(user_client, "eicar.txt", EICAR, "text/plain").json()  # the scan has not run yet
        url = user_client.get(f"{URL}{doc['id']}/download/").json()["url"]
        assert requests.get(url, timeout=5).content == EICAR

        with django_capture_on_commit_callbacks(execute=True):
            tasks.version_scan.delay(DocumentVersion.objects.get().pk)

        assert DocumentVersion.objects.get().quarantined_at is not None
        gone = requests.get(url, timeout=5)
        # S3 answers 404 NoSuchKey (403 without s3:ListBucket; moto says 403 for a
        # missing key signed with response-* parameters): either way, no bytes.
        assert gone.status_code in (403, 404) and EICAR not in gone.content

    def test_running_the_quarantine_task_again_does_nothing(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        upload_infected(user_client, django_capture_on_commit_callbacks)
        version = DocumentVersion.objects.get()
        calls = ProviderCall.objects.count()

        assert tasks.version_quarantine.delay(version.pk).get() == "skipped"

        assert ProviderCall.objects.count() == calls
        assert DocumentVersion.objects.get().storage_key == version.storage_key
        assert keys_in(s3) == [version.storage_key]

    def test_a_move_interrupted_after_the_delete_is_finished_by_the_next_run(self, user_client, s3, clamd_server):
        post(user_client, "eicar.txt", EICAR, "text/plain")  # on-commit callbacks dropped: no scan, no move
        DocumentVersion.objects.update(
            scan_status="infected", scan_detail="Eicar-Test-Signature", scanned_at=timezone.now()
        )
        version = DocumentVersion.objects.get()
        dest = f"quarantine/{version.storage_key}"
        # what a run that died after copying and deleting, before writing the row, leaves behind
        s3.copy_object(Bucket=BUCKET, Key=dest, CopySource={"Bucket": BUCKET, "Key": version.storage_key})
        s3.delete_object(Bucket=BUCKET, Key=version.storage_key)
        # meanwhile the sweep knows the copy by its original key
        assert services.orphans_sweep(now=timezone.now() + LATER)["removed"] == []

        assert services.version_quarantine(version_id=version.pk) == "already"

        version.refresh_from_db()
        assert version.storage_key == dest and version.quarantined_at is not None
        assert keys_in(s3) == [dest]

    def test_a_failed_copy_is_retried_by_celery(
        self, user_client, s3, clamd_server, settings, django_capture_on_commit_callbacks
    ):
        settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "s3": {"base": 0.001, "cap": 0.001, "max_retries": 3}}
        [client] = s3_clients()[1:]
        failures = [503]

        def flaky(request, **kwargs):
            return s3_error(request, failures.pop(), "SlowDown") if failures else None

        client.meta.events.register_first("before-send.s3.CopyObject", flaky)
        try:
            upload_infected(user_client, django_capture_on_commit_callbacks)
        finally:
            client.meta.events.unregister("before-send.s3.CopyObject", flaky)
        version = DocumentVersion.objects.get()
        assert version.quarantined_at is not None and keys_in(s3) == [version.storage_key]
        assert list(ProviderCall.objects.filter(operation="copy").order_by("id").values_list("attempt", "outcome")) == [
            (1, "error"),
            (2, "ok"),
        ]

    def test_restoring_a_quarantined_version_is_refused(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            doc = post(user_client, "a.txt", b"fine\n", "text/plain").json()
            post_version(user_client, doc["id"], "a.txt", EICAR, "text/plain")
        assert DocumentVersion.objects.get(number=2).quarantined_at is not None
        resp = user_client.post(f"{URL}{doc['id']}/versions/2/restore/")
        assert resp.status_code == 403 and resp.json()["error"] == "document_infected"
        assert user_client.get(f"{URL}{doc['id']}/versions/1/download/").status_code == 200

    def test_purging_a_quarantined_document_removes_the_quarantined_object(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        doc = upload_infected(user_client, django_capture_on_commit_callbacks)
        assert keys_in(s3) == [DocumentVersion.objects.get().storage_key]
        with django_capture_on_commit_callbacks(execute=True):
            assert user_client.delete(f"{URL}{doc['id']}/").status_code == 204
        assert keys_in(s3) == []
        assert Document.objects.count() == 0

    def test_on_a_versioned_bucket_the_infected_bytes_leave_the_documents_prefix_and_the_purge_leaves_nothing(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        doc = upload_infected(user_client, django_capture_on_commit_callbacks)
        # no noncurrent copy of the malware stays beside the clean files
        assert object_versions(s3, prefix="documents/") == []
        assert object_versions(s3) == [(DocumentVersion.objects.get().storage_key, "version")]
        with django_capture_on_commit_callbacks(execute=True):
            assert user_client.delete(f"{URL}{doc['id']}/").status_code == 204
        # the bucket's lifecycle rule covers documents/ only: a version left under quarantine/ would stay for good
        assert object_versions(s3) == []

    def test_purge_quarantine_leftovers_removes_what_quarantines_and_purges_left_before_b1c5280(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        """Before b1c5280 a quarantine move or a purge on a versioned bucket only put a delete marker on the key:
        the malware stayed as a noncurrent version of its original key (until the lifecycle rule's 30 days) or,
        for a purged quarantined document, under quarantine/ for good."""
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

        def left_as_before_b1c5280(key, body=EICAR):
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            s3.delete_object(Bucket=BUCKET, Key=key)  # a plain DeleteObject: a marker over the bytes

        upload_infected(user_client, django_capture_on_commit_callbacks)
        quarantined = DocumentVersion.objects.get().storage_key
        original = quarantined[len("quarantine/") :]
        left_as_before_b1c5280(original)
        left_as_before_b1c5280("quarantine/documents/ee/purged")  # a purged document's: no row names it
        # Kept: a quarantined object lost under a live row (its bytes are all there is), and a deleted clean file
        # under documents/ (the lifecycle rule expires it; versioning is the operator's undo until then).
        lost = upload_infected(user_client, django_capture_on_commit_callbacks, name="lost.txt")
        lost_key = DocumentVersion.objects.get(document_id=lost["id"]).storage_key
        s3.delete_object(Bucket=BUCKET, Key=lost_key)
        left_as_before_b1c5280("documents/cc/deleted-clean-file", b"fine\n")
        before = object_versions(s3)
        version_deletes = ProviderCall.objects.filter(operation="versions.delete", outcome="ok")
        deletes_before = version_deletes.count()

        out = io.StringIO()
        call_command("purge_quarantine_leftovers", "--dry-run", stdout=out)
        assert object_versions(s3) == before
        assert out.getvalue().splitlines()[:-1] == [original, "quarantine/documents/ee/purged"]

        call_command("purge_quarantine_leftovers", stdout=io.StringIO())
        # Sorted as object_versions sorts: the two quarantine keys are random, so their order is too.
        assert object_versions(s3) == sorted(
            [
                ("documents/cc/deleted-clean-file", "delete marker"),
                ("documents/cc/deleted-clean-file", "version"),
                (lost_key, "delete marker"),
                (lost_key, "version"),
                (quarantined, "version"),
            ]
        )
        assert version_deletes.count() == deletes_before + 2  # through the gateway, one request per key

    def test_the_sweep_keeps_quarantined_objects_with_a_row_and_removes_those_without(
        self, user_client, s3, clamd_server, django_capture_on_commit_callbacks
    ):
        upload_infected(user_client, django_capture_on_commit_callbacks)
        kept = DocumentVersion.objects.get().storage_key
        s3.put_object(Bucket=BUCKET, Key="quarantine/documents/zz/orphan", Body=b"x")

        result = services.orphans_sweep(now=timezone.now() + LATER)

        assert result["removed"] == ["quarantine/documents/zz/orphan"]
        assert keys_in(s3) == [kept]


class TestOnTheFilesystem:
    def test_an_infected_upload_is_moved_under_the_quarantine_prefix(
        self, user_client, clamd_server, settings, django_capture_on_commit_callbacks
    ):
        doc = upload_infected(user_client, django_capture_on_commit_callbacks)
        version = DocumentVersion.objects.get()
        assert version.storage_key.startswith("quarantine/documents/") and version.quarantined_at is not None
        assert files_under(settings.MEDIA_ROOT) == [version.storage_key]
        path = Path(settings.MEDIA_ROOT) / version.storage_key
        assert path.read_bytes() == EICAR
        assert path.stat().st_mode & 0o077 == 0 and path.parent.stat().st_mode & 0o077 == 0
        assert user_client.get(f"{URL}{doc['id']}/download/").status_code == 403
        # The filesystem is not a provider; the scan is (one clamav call with the bytes it read).
        scan = ProviderCall.objects.get()
        assert (scan.provider, scan.operation, scan.outcome, scan.units) == (
            "clamav",
            "scan",
            "ok",
            {"bytes": len(EICAR)},
        )

    def test_running_the_quarantine_task_again_does_nothing(
        self, user_client, clamd_server, settings, django_capture_on_commit_callbacks
    ):
        upload_infected(user_client, django_capture_on_commit_callbacks)
        version = DocumentVersion.objects.get()
        assert tasks.version_quarantine.delay(version.pk).get() == "skipped"
        # even a run that does not know it already happened finds the file in place
        DocumentVersion.objects.update(storage_key=version.storage_key[len("quarantine/") :], quarantined_at=None)
        assert services.version_quarantine(version_id=version.pk) == "already"
        assert DocumentVersion.objects.get().storage_key == version.storage_key
        assert files_under(settings.MEDIA_ROOT) == [version.storage_key]

    def test_the_setting_chooses_the_prefix(
        self, user_client, clamd_server, settings, django_capture_on_commit_callbacks
    ):
        settings.DOCUMENT_QUARANTINE_PREFIX = "infected-files/"
        upload_infected(user_client, django_capture_on_commit_callbacks)
        assert files_under(settings.MEDIA_ROOT) == [DocumentVersion.objects.get().storage_key]
        assert DocumentVersion.objects.get().storage_key.startswith("infected-files/documents/")

    def test_purging_a_quarantined_document_removes_the_file(
        self, user_client, clamd_server, settings, django_capture_on_commit_callbacks
    ):
        doc = upload_infected(user_client, django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=True):
            user_client.delete(f"{URL}{doc['id']}/")
        assert files_under(settings.MEDIA_ROOT) == [] and DocumentVersion.objects.count() == 0

    def test_the_sweep_leaves_a_quarantined_file_whose_row_exists(
        self, user_client, clamd_server, settings, django_capture_on_commit_callbacks
    ):
        upload_infected(user_client, django_capture_on_commit_callbacks)
        key = DocumentVersion.objects.get().storage_key
        old = (timezone.now() - dt.timedelta(hours=3)).timestamp()
        os.utime(Path(settings.MEDIA_ROOT) / key, (old, old))
        assert services.orphans_sweep()["removed"] == []
        assert files_under(settings.MEDIA_ROOT) == [key]

    def test_the_sweep_requeues_a_quarantine_that_was_lost(
        self, user_client, clamd_server, settings, django_capture_on_commit_callbacks
    ):
        post(user_client, "eicar.txt", EICAR, "text/plain")  # on-commit callbacks dropped
        DocumentVersion.objects.update(
            scan_status="infected",
            scan_detail="Eicar-Test-Signature",
            scanned_at=timezone.now() - dt.timedelta(hours=1),
        )
        with django_capture_on_commit_callbacks(execute=True):
            result = services.orphans_sweep()
        version = DocumentVersion.objects.get()
        assert result["requarantined"] == [version.pk]
        assert version.quarantined_at is not None and files_under(settings.MEDIA_ROOT) == [version.storage_key]


def test_signature_names_are_made_valid_tag_values():
    assert providers.tag_value("Win.Test.EICAR_HDB-1") == "Win.Test.EICAR_HDB-1"
    assert providers.tag_value("Heuristics.Phishing.Email.SpoofedDomain(evil)&x=<y>") == (
        "Heuristics.Phishing.Email.SpoofedDomain_evil__x=_y_"
    )
    assert len(providers.tag_value("A" * 300)) == 256
