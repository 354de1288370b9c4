"""The daily archive of the audit trail to S3, and the prune that follows it only once verified.

    s3://AUDIT_ARCHIVE_BUCKET/AUDIT_ARCHIVE_PREFIX/date=2026-12-01/events-2026-12-01-part001.jsonl.gz

One gzip JSON-lines object per day (a further part if events of that day
turn up later), written from a spooled temporary file so a busy day is never
held in memory, uploaded with its SHA-256 (`ChecksumSHA256`, which S3
verifies on receipt) and, where the bucket has Object Lock enabled, with a
retention of AUDIT_ARCHIVE_RETENTION_DAYS in AUDIT_ARCHIVE_LOCK_MODE
(GOVERNANCE by default: see config/settings/ops.py for why). A bucket without
Object Lock still gets the archive, and a warning alert says the objects can
be deleted.

Pruning (rows older than AUDIT_DB_RETENTION_DAYS) reads each archive object
back first: its SHA-256 must match the one recorded at upload, and the ids it
holds are the ids deleted, nothing else. The database enforces the same
rule: the append-only trigger lets a DELETE through only inside a transaction
that set `hub.audit_prune`, and only for a row that a verified archive covers.

Every S3 request is one gateway attempt of provider "audit_archive" (the call
log, the breaker); boto3 makes one attempt, the nightly task is the retry.
"""

import base64
import datetime as dt
import gzip
import hashlib
import json
import logging
import tempfile

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from .. import egress
from ..errors import error_from_http
from ..providers import ClientCache, ProviderAdapter, credentials_key
from .models import AuditArchive, AuditEvent

logger = logging.getLogger(__name__)

PROVIDER = "audit_archive"
SPOOL_BYTES = 8 * 1024 * 1024
PRUNE_BATCH = 1000
# How many whole days each run looks at again for events committed after their day was archived: an event's
# `at` and id are taken when it is written, but the run sees it only once its transaction commits, which can be
# after the night's run. A day in the window costs one count unless it did get such an event.
RECHECK_DAYS = 7


class ArchiveAdapter(ProviderAdapter):
    provider = PROVIDER
    sdk_errors = (ClientError, BotoCoreError)

    def translate(self, exc):
        if isinstance(exc, ClientError):
            meta = exc.response.get("ResponseMetadata", {})
            error = exc.response.get("Error", {})
            return error_from_http(
                PROVIDER,
                meta.get("HTTPStatusCode") or 0,
                headers=meta.get("HTTPHeaders") or {},
                code=error.get("Code"),
                message=error.get("Message") or str(exc),
                request_id=meta.get("RequestId"),
            )
        return None  # connection trouble and timeouts: the gateway classifies them


ARCHIVE = ArchiveAdapter()
_clients = ClientCache()


class ArchiveMismatch(Exception):
    """The object read back is not what was uploaded: nothing is pruned."""


def _client():
    key = credentials_key(
        settings.AWS_ACCESS_KEY_ID,
        settings.AWS_SECRET_ACCESS_KEY,
        settings.AWS_S3_REGION_NAME,
        settings.AWS_S3_ENDPOINT_URL,
    )

    def build():
        return boto3.client(
            "s3",
            aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
            aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
            region_name=settings.AWS_S3_REGION_NAME or None,
            endpoint_url=settings.AWS_S3_ENDPOINT_URL or None,
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                proxies=egress.botocore_proxies(
                    settings.AWS_S3_ENDPOINT_URL
                    or f"https://s3.{settings.AWS_S3_REGION_NAME or 'us-east-1'}.amazonaws.com"
                ),
            ),
        )

    return _clients.get(key, build)


def object_lock_enabled(bucket):
    """True when the bucket has Object Lock enabled (it can only be turned on at creation, or by AWS support)."""
    with ARCHIVE.attempt("bucket.object_lock") as call:
        try:
            answer = _client().get_object_lock_configuration(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                call.record(http_status=404)
                return False
            raise
        call.record(http_status=200)
    return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def _event_line(event):
    return {
        "id": event["id"],
        "at": event["at"].isoformat(),
        "actor_id": event["actor_id"],
        "actor_label": event["actor_label"],
        "action": event["action"],
        "target_type": event["target_type"],
        "target_id": event["target_id"],
        "target_label": event["target_label"],
        "outcome": event["outcome"],
        "ip": event["ip"],
        "request_id": event["request_id"],
        "details": event["details"],
    }


def _day_bounds(day):
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def _write_object(rows, spool):
    """Write the events to `spool` (left at position 0): (sha256 hex, byte count, row count, first id, last id)."""
    count, first_id, last_id = 0, None, None
    # mtime=0: the same events always make the same bytes (and the same checksum).
    with gzip.GzipFile(fileobj=spool, mode="wb", mtime=0) as gz:
        for event in rows:
            gz.write(json.dumps(_event_line(event), sort_keys=True, default=str).encode() + b"\n")
            count += 1
            first_id = event["id"] if first_id is None else first_id
            last_id = event["id"]
    size = spool.tell()
    spool.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: spool.read(1024 * 1024), b""):
        digest.update(chunk)
    spool.seek(0)
    return digest.hexdigest(), size, count, first_id, last_id


def _not_archived(day, events):
    """(the day's events that may be in no part yet, ids among them that a part holds).

    Not "ids above the last archived": a transaction that took its id before a run and committed after it has a
    lower id than that part's last. Usually every id up to the day's last archived one is archived (as many
    events as the parts hold): only higher ids are new. Otherwise the parts are read back (and verified) for the
    ids they hold, and the rest of the day is new."""
    parts = AuditArchive.objects.filter(day=day).aggregate(
        last=Max("last_id"), rows=Sum("rows"), pruned=Count("pk", filter=Q(pruned_at__isnull=False))
    )
    if parts["last"] is None:
        return events, frozenset()
    if not parts["pruned"] and events.filter(id__lte=parts["last"]).count() == parts["rows"]:
        return events.filter(id__gt=parts["last"]), frozenset()
    held = set()
    try:
        for archive in AuditArchive.objects.filter(day=day):
            held.update(archive_read_ids(archive=archive))
    except ArchiveMismatch as exc:
        # What the day's parts hold is unknown: archiving "the rest" could copy events twice. Staff look first.
        _warn("audit_archive:mismatch", f"Audit archive of {day} failed verification; day not archived: {exc}")
        return events.none(), frozenset()
    return events, held


def archive_day(*, day, lock=None, now=None):
    """Archive the events of `day` that no part of it holds yet as the day's next part; the AuditArchive row,
    or None when there are none."""
    now = now or timezone.now()
    start, end = _day_bounds(day)
    fields = [f.attname for f in AuditEvent._meta.concrete_fields]
    events, held = _not_archived(day, AuditEvent.objects.filter(at__gte=start, at__lt=end))
    rows = (row for row in events.order_by("id").values(*fields).iterator(chunk_size=2000) if row["id"] not in held)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        sha256, size, count, first_id, last_id = _write_object(rows, spool)
        if not count:
            return None
        return _upload(day, spool, sha256, size, count, first_id, last_id, lock=lock, now=now)


def _upload(day, spool, sha256, size, count, first_id, last_id, *, lock, now):
    bucket = settings.AUDIT_ARCHIVE_BUCKET
    part = (AuditArchive.objects.filter(day=day).aggregate(m=Max("part"))["m"] or 0) + 1
    key = f"{settings.AUDIT_ARCHIVE_PREFIX}/date={day:%Y-%m-%d}/events-{day:%Y-%m-%d}-part{part:03d}.jsonl.gz"
    params = {
        "Bucket": bucket,
        "Key": key,
        "Body": spool,
        "ContentType": "application/gzip",
        "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode(),
        "ServerSideEncryption": "AES256",
        "Metadata": {"rows": str(count), "first-id": str(first_id), "last-id": str(last_id), "sha256": sha256},
    }
    lock_mode, retain_until = "", None
    if lock:
        lock_mode = settings.AUDIT_ARCHIVE_LOCK_MODE
        retain_until = now + dt.timedelta(days=settings.AUDIT_ARCHIVE_RETENTION_DAYS)
        params["ObjectLockMode"] = lock_mode
        params["ObjectLockRetainUntilDate"] = retain_until
    with ARCHIVE.attempt("object.put") as call:
        answer = _client().put_object(**params)
        call.record(http_status=200, units={"requests": 1, "bytes_in": size})
    archive = AuditArchive.objects.create(
        day=day,
        part=part,
        bucket=bucket,
        key=key,
        version_id=answer.get("VersionId") or "",
        first_id=first_id,
        last_id=last_id,
        rows=count,
        bytes=size,
        sha256=sha256,
        lock_mode=lock_mode,
        retain_until=retain_until,
    )
    archive_verify(archive=archive)
    logger.info("audit day archived", extra={"day": str(day), "rows": count, "key": key, "lock": lock_mode})
    return archive


def archive_read_ids(*, archive):
    """Read the object back: its SHA-256 must be the one recorded; returns the event ids it holds."""
    params = {"Bucket": archive.bucket, "Key": archive.key, "ChecksumMode": "ENABLED"}
    if archive.version_id:
        params["VersionId"] = archive.version_id
    with ARCHIVE.attempt("object.get") as call:
        answer = _client().get_object(**params)
        body = answer["Body"]
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as copy:
            for chunk in iter(lambda: body.read(1024 * 1024), b""):
                digest.update(chunk)
                copy.write(chunk)
            call.record(http_status=200, units={"requests": 1, "bytes_out": copy.tell()})
            if digest.hexdigest() != archive.sha256:
                raise ArchiveMismatch(f"{archive.key}: SHA-256 {digest.hexdigest()} is not {archive.sha256}")
            stored = answer.get("ChecksumSHA256")
            if stored and base64.b64decode(stored).hex() != archive.sha256:
                raise ArchiveMismatch(f"{archive.key}: S3's ChecksumSHA256 does not match the recorded one")
            copy.seek(0)
            with gzip.GzipFile(fileobj=copy, mode="rb") as gz:
                ids = [json.loads(line)["id"] for line in gz]
    if len(ids) != archive.rows or (ids and (ids[0] != archive.first_id or ids[-1] != archive.last_id)):
        raise ArchiveMismatch(f"{archive.key}: holds {len(ids)} events, {archive.rows} were archived")
    return ids


def archive_verify(*, archive):
    ids = archive_read_ids(archive=archive)
    AuditArchive.objects.filter(pk=archive.pk).update(verified_at=timezone.now())
    archive.verified_at = timezone.now()
    return ids


def _prune_ids(ids):
    """Delete these events in batches, each its own short transaction that says it is the archive's prune."""
    removed = 0
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    for i in range(0, len(ids), PRUNE_BATCH):
        batch = ids[i : i + PRUNE_BATCH]
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL hub.audit_prune = 'on'")
            cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(batch))})", batch)
            removed += cursor.rowcount
    return removed


def audit_prune(*, now=None):
    """Delete events older than AUDIT_DB_RETENTION_DAYS whose archive object reads back intact. Rows removed."""
    if settings.AUDIT_DB_RETENTION_DAYS <= 0:
        return 0
    now = now or timezone.now()
    cutoff = (now - dt.timedelta(days=settings.AUDIT_DB_RETENTION_DAYS)).date()
    removed = 0
    for archive in AuditArchive.objects.filter(day__lt=cutoff, pruned_at__isnull=True).order_by("day", "part"):
        try:
            ids = archive_verify(archive=archive)  # verified again now: this is the moment it matters
        except ArchiveMismatch as exc:
            _warn("audit_archive:mismatch", f"Audit archive {archive.key} failed verification; nothing pruned: {exc}")
            continue
        count = _prune_ids(ids)
        AuditArchive.objects.filter(pk=archive.pk).update(pruned_at=timezone.now(), pruned_rows=count)
        removed += count
    return removed


def _warn(key, message, severity="warning"):
    from ..alerts import alert_raise
    from ..models import Alert

    logger.warning(message)
    alert_raise(kind=Alert.Kind.OPERATIONS, severity=severity, message=message, dedupe_key=key)


def audit_archive_run(*, now=None):
    """The nightly task: archive every whole day not archived yet (up to yesterday), then prune. A summary."""
    from ..registry import require

    if not settings.AUDIT_ARCHIVE_BUCKET:
        logger.info("audit archive skipped: AUDIT_ARCHIVE_BUCKET is not set")
        return {"archived": 0, "pruned": 0, "configured": False}
    require(PROVIDER)
    now = now or timezone.now()
    today_start, _ = _day_bounds(now.date())
    lock = object_lock_enabled(settings.AUDIT_ARCHIVE_BUCKET)
    if not lock:
        _warn(
            "audit_archive:no_object_lock",
            f"The audit archive bucket {settings.AUDIT_ARCHIVE_BUCKET} has no Object Lock: archived days are "
            f"written, but can be deleted or overwritten. Use a bucket created with Object Lock enabled.",
        )
    # The days with events above every archived id (new days, or all of them on the first run), and the last
    # RECHECK_DAYS again: an event committed after its day's run is in no part of it (archive_day finds it).
    high_water = AuditArchive.objects.aggregate(m=Max("last_id"))["m"] or 0
    new = AuditEvent.objects.filter(id__gt=high_water, at__lt=today_start)
    recent = AuditEvent.objects.filter(at__gte=today_start - dt.timedelta(days=RECHECK_DAYS), at__lt=today_start)
    days = sorted({at.date() for rows in (new, recent) for at in rows.datetimes("at", "day", tzinfo=dt.UTC)})
    archived = [archive_day(day=day, lock=lock, now=now) for day in days]
    pruned = audit_prune(now=now)
    return {"archived": len([a for a in archived if a]), "pruned": pruned, "configured": True, "object_lock": lock}
