"""The daily archive of the audit trail to S3, and the prune that follows it only once verified.

    s3://AUDIT_ARCHIVE_BUCKET/AUDIT_ARCHIVE_PREFIX/date=2026-12-01/events-2026-12-01-part001.jsonl.gz

One gzip JSON-lines object per day (a further part if events of that day
turn up later: the ids no part holds yet are kept in AuditArchiveGap),
written from a spooled temporary file so a busy day is never held in memory, uploaded with its SHA-256 (`ChecksumSHA256`, which S3
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
from .models import AuditArchive, AuditArchiveGap, AuditEvent

logger = logging.getLogger(__name__)

PROVIDER = "audit_archive"
SPOOL_BYTES = 8 * 1024 * 1024
PRUNE_BATCH = 1000


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


class _DayUnverified(Exception):
    """The day's parts failed verification: what they hold is unknown, the day is left to staff."""


def _not_archived(day, events):
    """(the day's events that may be in no part yet, ids among them that a part holds); _DayUnverified when the
    day's parts do not read back intact.

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
        raise _DayUnverified(day) from exc
    return events, held


def archive_day(*, day, lock=None, now=None):
    """Archive the events of `day` that no part of it holds yet as the day's next part; the AuditArchive row,
    or None when there are none (or the day's parts fail verification: a warning alert says so)."""
    try:
        return _archive_day(day, lock=lock, now=now)
    except _DayUnverified:
        return None


def _archive_day(day, *, lock, now):
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
    """The nightly task: archive every whole day (up to yesterday) with an event no part holds yet, then prune.
    A summary."""
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
    archived = _archive_gaps(today_start, lock=lock, now=now)
    pruned = audit_prune(now=now)
    return {"archived": len([a for a in archived if a]), "pruned": pruned, "configured": True, "object_lock": lock}


def _archive_gaps(today_start, *, lock, now):
    """Archive the whole days that have an event in a gap (an id no run has seen yet, whatever its `at`), then
    record what is still missing; the AuditArchive rows made.

    Not "the days after the last archived one, and the last few again": a transaction can take its event's id
    and time, then commit after any number of nightly runs. Selecting by id gaps, an event is archived by the
    first run after it commits, however late. A run that fails part-way records nothing: the next one reads the
    same gaps, and each day's parts say what they already hold."""
    gaps = [(g.first_id, g.last_id, g.found_at) for g in AuditArchiveGap.objects.order_by("first_id")]
    if not gaps:
        gaps = [(1, None, None)]  # the first run: every event in the database (days already archived included)
    in_gap = Q()
    for first, last, _ in gaps:
        in_gap |= Q(id__gte=first) if last is None else Q(id__range=(first, last))
    # The ids seen, as runs of consecutive ids per day: a day whose parts fail verification keeps its ids missing.
    seen, top = {}, None
    candidates = AuditEvent.objects.filter(in_gap, at__lt=today_start).order_by("id").values_list("id", "at")
    for pk, at in candidates.iterator(chunk_size=5000):
        runs = seen.setdefault(at.astimezone(dt.UTC).date(), [])
        if runs and runs[-1][1] == pk - 1:
            runs[-1][1] = pk
        else:
            runs.append([pk, pk])
        top = pk
    found_at = _database_now()  # after the read: a transaction it could not see began before this
    made, covered = [], []
    for day in sorted(seen):
        try:
            made.append(_archive_day(day, lock=lock, now=now))
        except _DayUnverified:
            continue
        covered += seen[day]
    open_before = {}  # found_at -> whether a transaction that began before it is still open (one query each)
    left = [gap for gap in _gaps_left(gaps, top, covered, found_at) if not _gap_closed(*gap, open_before)]
    with transaction.atomic():
        AuditArchiveGap.objects.all().delete()
        AuditArchiveGap.objects.bulk_create(
            AuditArchiveGap(first_id=first, last_id=last, found_at=when) for first, last, when in left
        )
    return [a for a in made if a]


def _gaps_left(gaps, top, covered, found_at):
    """The gaps minus the ids archived (`covered`, runs of ids), the open-ended one closed at the highest id
    read (`top`, ids below it are taken by transactions that began before the read) with a new open one above."""
    closed, open_from = [], None
    for first, last, when in gaps:
        if last is not None:
            closed.append((first, last, when))
        elif top is not None and top >= first:
            closed.append((first, top, found_at))
            open_from = top + 1
        else:
            open_from = first
    covered = sorted(covered)
    left = []
    for first, last, when in closed:
        start = first
        for a, b in covered:
            if b < start:
                continue
            if a > last:
                break
            if a > start:
                left.append((start, a - 1, when))
            start = b + 1
        if start <= last:
            left.append((start, last, when))
    return [*left, (open_from, None, found_at)]


def _database_now():
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def _gap_closed(first, last, found_at, open_before):
    """Whether a gap can be forgotten: it holds no event and none ever will. On PostgreSQL, once every
    transaction that began before it was found has ended (a transaction that took one of its ids began before
    that, so it was rolled back; sessions of a role we may not see count as open). Elsewhere (SQLite, one
    writer at a time) it stays: a few primary-key range reads a night."""
    if last is None or connection.vendor != "postgresql":
        return False
    if found_at not in open_before:
        open_before[found_at] = _transaction_open_since(found_at)
    if open_before[found_at]:
        return False
    return not AuditEvent.objects.filter(id__range=(first, last)).exists()


def _transaction_open_since(moment):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (
                SELECT 1 FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND (backend_type = 'client backend' OR backend_type IS NULL)
                  AND (xact_start <= %s OR state IS NULL)
            ) OR EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database() AND prepared <= %s)
            """,
            [moment, moment],
        )
        return cursor.fetchone()[0]
