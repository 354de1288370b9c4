"""The audit trail's daily archive to S3 (moto, Object Lock on) and the prune that only follows verification."""

import datetime as dt
import gzip
import json
import threading
from unittest import mock

import boto3
import pytest
import time_machine
from django.db import DatabaseError, connection, transaction
from moto import mock_aws

from integrations.audit import archive as archive_mod
from integrations.audit.archive import ArchiveMismatch, archive_read_ids, audit_archive_run, audit_prune
from integrations.audit.models import AuditArchive, AuditArchiveGap, AuditEvent
from integrations.audit.services import audit_record
from integrations.models import Alert, ProviderCall
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
BUCKET = "hub-audit"
DAY1 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def s3(settings):
    with mock_aws():
        settings.AUDIT_ARCHIVE_BUCKET = BUCKET
        settings.AWS_ACCESS_KEY_ID = "AKIATESTTESTTESTTEST"
        settings.AWS_SECRET_ACCESS_KEY = "test-secret-key"
        settings.AWS_S3_REGION_NAME = "us-east-1"
        settings.AWS_S3_ENDPOINT_URL = ""
        settings.AUDIT_DB_RETENTION_DAYS = 20
        archive_mod._clients.clear()
        client = boto3.client("s3", region_name="us-east-1")
        yield client
        archive_mod._clients.clear()


@pytest.fixture
def locked_bucket(s3):
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    return s3


def _events_on(moment, n, **details):
    with time_machine.travel(moment, tick=False):
        return [audit_record(action="payment.refund", target=("refund", str(i)), n=i, **details) for i in range(n)]


def _read(s3, key):
    raw = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return [json.loads(line) for line in gzip.decompress(raw).splitlines()]


def test_each_whole_day_becomes_one_locked_gzip_json_lines_object(locked_bucket, settings):
    staff = UserFactory(is_staff=True, username="alice")
    with time_machine.travel(DAY1, tick=False):
        audit_record(action="circuit.close", actor=staff, target=("provider", "stripe"))
    _events_on(DAY1 + dt.timedelta(days=1), 3)
    _events_on(DAY1 + dt.timedelta(days=2, hours=1), 2)  # "today" for the run below: not archived yet

    summary = audit_archive_run(now=DAY1 + dt.timedelta(days=2, hours=2))

    assert summary == {"archived": 2, "pruned": 0, "configured": True, "object_lock": True}
    first, second = AuditArchive.objects.order_by("day")
    assert first.key == "audit/date=2026-11-03/events-2026-11-03-part001.jsonl.gz"
    assert (first.rows, second.rows) == (1, 3)
    lines = _read(locked_bucket, first.key)
    assert lines[0]["actor_label"] == "staff:alice" and lines[0]["action"] == "circuit.close"
    head = locked_bucket.head_object(Bucket=BUCKET, Key=first.key)
    assert head["ObjectLockMode"] == "GOVERNANCE" == first.lock_mode
    assert head["ObjectLockRetainUntilDate"].year == 2033  # seven years on
    assert first.verified_at is not None
    # A second run finds nothing new to archive.
    assert audit_archive_run(now=DAY1 + dt.timedelta(days=2, hours=3))["archived"] == 0
    ops = set(ProviderCall.objects.filter(provider="audit_archive").values_list("operation", flat=True))
    assert ops == {"bucket.object_lock", "object.put", "object.get"}


def test_a_bucket_without_object_lock_still_gets_the_archive_and_staff_a_warning(s3):
    s3.create_bucket(Bucket=BUCKET)
    _events_on(DAY1, 2)
    summary = audit_archive_run(now=DAY1 + dt.timedelta(days=1))
    assert summary["archived"] == 1 and summary["object_lock"] is False
    assert AuditArchive.objects.get().lock_mode == ""
    assert Alert.objects.get(dedupe_key="audit_archive:no_object_lock").resolved_at is None


def test_without_a_bucket_the_run_does_nothing(settings):
    settings.AUDIT_ARCHIVE_BUCKET = ""
    assert audit_archive_run()["configured"] is False


def test_rows_are_pruned_only_after_the_object_reads_back_intact(locked_bucket, settings):
    old = _events_on(DAY1, 3)
    recent = _events_on(DAY1 + dt.timedelta(days=25), 2)
    settings.AUDIT_DB_RETENTION_DAYS = 0  # archive only
    audit_archive_run(now=DAY1 + dt.timedelta(days=26))
    assert AuditEvent.objects.count() == 5 and AuditArchive.objects.count() == 2

    settings.AUDIT_DB_RETENTION_DAYS = 20
    pruned = audit_prune(now=DAY1 + dt.timedelta(days=26))

    assert pruned == 3  # day 1 is past 20 days; day 26's archive is kept in the database too
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == {e.pk for e in recent}
    archive = AuditArchive.objects.get(day=DAY1.date())
    assert archive.pruned_rows == 3 and archive.pruned_at is not None
    assert [line["id"] for line in _read(locked_bucket, archive.key)] == [e.pk for e in old]


def test_a_tampered_archive_blocks_the_prune(s3, settings):
    s3.create_bucket(Bucket=BUCKET)  # no lock, so the object can be overwritten
    _events_on(DAY1, 3)
    audit_archive_run(now=DAY1 + dt.timedelta(days=1))
    archive = AuditArchive.objects.get()
    s3.put_object(Bucket=BUCKET, Key=archive.key, Body=gzip.compress(b'{"id": 1}\n'))
    archive.version_id = ""
    with pytest.raises(ArchiveMismatch):
        archive_read_ids(archive=archive)
    AuditArchive.objects.filter(pk=archive.pk).update(version_id="")

    assert audit_prune(now=DAY1 + dt.timedelta(days=30)) == 0
    assert AuditEvent.objects.count() == 3
    assert Alert.objects.filter(dedupe_key="audit_archive:mismatch").exists()


def test_a_failed_upload_leaves_no_archive_row_and_prunes_nothing(locked_bucket, settings):
    _events_on(DAY1, 2)
    with mock.patch.object(archive_mod, "_client") as client:
        client.return_value.get_object_lock_configuration.return_value = {
            "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}
        }
        client.return_value.put_object.side_effect = ConnectionError("connection reset")
        with pytest.raises(Exception, match="connection reset"):
            audit_archive_run(now=DAY1 + dt.timedelta(days=30))
    assert not AuditArchive.objects.exists() and AuditEvent.objects.count() == 2


@pytest.mark.postgres
def test_the_trigger_refuses_a_prune_of_rows_no_verified_archive_covers(locked_bucket, settings):
    unarchived = _events_on(DAY1, 1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL hub.audit_prune = 'on'")
        cur.execute("DELETE FROM audit_auditevent WHERE id = %s", [unarchived.pk])
    audit_archive_run(now=DAY1 + dt.timedelta(days=1))
    # Covered by a verified archive, but without the transaction's say-so: still refused.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM audit_auditevent WHERE id = %s", [unarchived.pk])
    # An unverified archive row does not open the door either.
    AuditArchive.objects.update(verified_at=None)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL hub.audit_prune = 'on'")
        cur.execute("DELETE FROM audit_auditevent WHERE id = %s", [unarchived.pk])
    assert AuditEvent.objects.filter(pk=unarchived.pk).exists()


class _LateCommit:
    """A transaction on its own connection that writes an event (its id and `at` taken now) and commits only
    when told: what a slow request, a stuck worker or a long migration does to the trail."""

    def __init__(self, moment, *, write=True, commit=True):
        self.event, self._release = None, threading.Event()
        inside = threading.Event()

        def run():
            try:
                with transaction.atomic():
                    if write:
                        self.event = _events_on(moment, 1)[0]
                    else:
                        AuditEvent.objects.exists()  # a transaction that has begun, and holds no id
                    inside.set()
                    self._release.wait(20)
                    if not commit:
                        transaction.set_rollback(True)
            finally:
                connection.close()

        self._thread = threading.Thread(target=run)
        self._thread.start()
        assert inside.wait(10)

    def end(self):
        self._release.set()
        self._thread.join(10)
        return self.event


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_committed_after_its_day_was_archived_goes_in_the_next_part(locked_bucket, settings):
    """A transaction takes its event's id (and its time) just before midnight and commits after the night's run,
    which archived the day's later, higher ids. The next run must archive it as a further part of that day: the
    trail in S3 is the record kept for years, and an event no part holds is never pruned nor archived."""
    slow = _LateCommit(DAY1 + dt.timedelta(hours=13, minutes=59))
    on_time = _events_on(DAY1 + dt.timedelta(hours=13, minutes=59, seconds=30), 2)
    assert audit_archive_run(now=DAY1 + dt.timedelta(days=1, minutes=15))["archived"] == 1
    late = slow.end()
    assert late.pk < on_time[-1].pk

    assert audit_archive_run(now=DAY1 + dt.timedelta(days=2, minutes=15))["archived"] == 1

    parts = AuditArchive.objects.filter(day=DAY1.date()).order_by("part")
    assert [[line["id"] for line in _read(locked_bucket, p.key)] for p in parts] == [
        [e.pk for e in on_time],
        [late.pk],
    ]
    assert audit_archive_run(now=DAY1 + dt.timedelta(days=3, minutes=15))["archived"] == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_committed_weeks_after_its_day_is_archived_by_the_first_run_after(locked_bucket, settings):
    """However many nightly runs pass over it while its transaction is open (each archiving the days after),
    the event goes into its day's next part the night after it commits: the runs look for ids they have not seen
    in any part, not at a window of recent days."""
    slow = _LateCommit(DAY1 + dt.timedelta(hours=13, minutes=59))  # 23:59 UTC
    on_time = _events_on(DAY1 + dt.timedelta(hours=13, minutes=59, seconds=30), 1)
    for night in range(1, 12):
        # 00:15 UTC: the day before is archived (one event a day), 11 nights while the transaction is open.
        assert audit_archive_run(now=DAY1 + dt.timedelta(days=night, hours=14, minutes=15))["archived"] == 1
        _events_on(DAY1 + dt.timedelta(days=night), 1)
    late = slow.end()
    assert late.pk < on_time[0].pk

    assert audit_archive_run(now=DAY1 + dt.timedelta(days=12, hours=14, minutes=15))["archived"] == 2  # + day 11

    parts = AuditArchive.objects.filter(day=DAY1.date()).order_by("part")
    assert [[line["id"] for line in _read(locked_bucket, p.key)] for p in parts] == [[on_time[0].pk], [late.pk]]
    assert audit_archive_run(now=DAY1 + dt.timedelta(days=13, minutes=15))["archived"] == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_id_rolled_back_is_forgotten_once_no_older_transaction_is_open(locked_bucket, settings):
    """The ids a run has not seen are looked at again each night; one that was rolled back can never turn up,
    which PostgreSQL shows once every transaction that began before the run has ended."""
    older = _LateCommit(DAY1, write=False)  # began before the run, and is still open during it
    _LateCommit(DAY1 + dt.timedelta(hours=1), commit=False).end()  # took an id, then rolled back
    kept = _events_on(DAY1 + dt.timedelta(hours=2), 1)[0]
    audit_archive_run(now=DAY1 + dt.timedelta(days=1))
    waiting = AuditArchiveGap.objects.filter(last_id__isnull=False)
    assert waiting.filter(first_id__lte=kept.pk - 1, last_id__gte=kept.pk - 1).exists()

    older.end()
    audit_archive_run(now=DAY1 + dt.timedelta(days=2))

    assert list(AuditArchiveGap.objects.values_list("first_id", "last_id")) == [(kept.pk + 1, None)]


def test_an_event_of_the_day_the_run_was_in_is_archived_the_next_night(locked_bucket, settings):
    """Its id is below one the run archived (yesterday's last event took its time before midnight and its id
    after): it is in no part, and the run after archives it with its own day."""
    with time_machine.travel(DAY1 + dt.timedelta(days=1, seconds=1), tick=False):
        today = AuditEvent.objects.create(actor_label="system", action="payment.refund")
    _event_with_id(today.pk + 1, DAY1 + dt.timedelta(hours=13, minutes=59))

    assert audit_archive_run(now=DAY1 + dt.timedelta(days=1, minutes=15))["archived"] == 1
    assert audit_archive_run(now=DAY1 + dt.timedelta(days=2, minutes=15))["archived"] == 1

    assert [(a.day, a.first_id) for a in AuditArchive.objects.order_by("day")] == [
        (DAY1.date(), today.pk + 1),
        (DAY1.date() + dt.timedelta(days=1), today.pk),
    ]


def _event_with_id(pk, moment):
    """An event with its id chosen (bulk_create skips save)."""
    with time_machine.travel(moment, tick=False):
        AuditEvent.objects.bulk_create([AuditEvent(id=pk, actor_label="system", action="payment.refund")])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_day_whose_parts_fail_verification_is_left_for_staff_not_archived_again(s3, settings):
    s3.create_bucket(Bucket=BUCKET)  # no lock, so the object can be overwritten
    slow = _LateCommit(DAY1)  # committed after the run, with an id below the part's last
    _events_on(DAY1, 1)
    audit_archive_run(now=DAY1 + dt.timedelta(days=1))
    slow.end()
    _events_on(DAY1 + dt.timedelta(days=1), 1)
    part = AuditArchive.objects.get()
    s3.put_object(Bucket=BUCKET, Key=part.key, Body=gzip.compress(b'{"id": 1}\n'))
    AuditArchive.objects.filter(pk=part.pk).update(version_id="")

    assert audit_archive_run(now=DAY1 + dt.timedelta(days=2))["archived"] == 1  # the next day only

    assert list(AuditArchive.objects.values_list("day", flat=True)) == [DAY1.date() + dt.timedelta(days=1), DAY1.date()]
    assert "failed verification" in Alert.objects.get(dedupe_key="audit_archive:mismatch").message


def test_staff_see_the_id_ranges_still_waiting_for_the_archive_and_cannot_change_them(admin_client):
    """A gap the run keeps open night after night (a transaction left open since, or an id rolled back while an
    older one is open) was visible nowhere: the gaps are listed, read-only, beside the archive's parts."""
    found = dt.datetime(2026, 11, 3, 0, 30, tzinfo=dt.UTC)
    held = AuditArchiveGap.objects.create(first_id=1041, last_id=1043, found_at=found)
    AuditArchiveGap.objects.create(first_id=2000, last_id=None, found_at=found + dt.timedelta(days=11))
    url = "/admin/audit/auditarchivegap/"

    with time_machine.travel(found + dt.timedelta(days=11, hours=1), tick=False):
        page = admin_client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "1041–1043" in text and "2000 and up" in text and "every new event" in text
    assert "11 days" in text  # how long the held one has waited

    assert admin_client.get(f"{url}add/").status_code == 403
    assert admin_client.post(f"{url}{held.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"{url}{held.pk}/change/", {"first_id": 1, "found_at": found}).status_code == 403
    assert admin_client.post(url, {"action": "delete_selected", "_selected_action": [held.pk]}).status_code != 302
    held.refresh_from_db()
    assert (held.first_id, held.last_id) == (1041, 1043)
    assert AuditArchiveGap.objects.count() == 2
