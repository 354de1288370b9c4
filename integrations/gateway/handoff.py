"""The call-log rows of Celery jobs, handed off through Redis and written in batches (issue 11 point 6).

A successful provider call in a task wrote its ProviderCall row and both roll-ups in one PostgreSQL
round trip and commit of its own: ~0.6 ms of PostgreSQL's CPU and ~0.4 ms of the worker's per job,
about a third of what an outbound job costs the machine (bench_scaleout); fifty rows written at once
cost ~0.05 and ~0.11 each. A web worker batches such rows in memory (batchlog) and may lose the last
50 ms of them if killed; a Celery job may not: its message is acked once the task returns, so what the
task hands off must survive the worker. Here, in a Celery worker process only:

- `hand_off`: the row (priced and redacted as ever: calllog.call_row), with a `handoff_id` of its own,
  is serialized and RPUSHed onto one list on the hub's Redis (REDIS_URL, the limiter's client, never
  the broker's connection) before the task returns, so before its message is acked. One round trip,
  instead of PostgreSQL's. If Redis cannot be reached, the row is written directly, as before.
- A drainer thread per worker process: every BATCH_INTERVAL after a hand-off (and every
  HEARTBEAT_SECONDS / 3 anyway) one Lua script moves up to MAX_ROWS rows from the list to an in-flight
  list of its own and refreshes its heartbeat key (TTL HEARTBEAT_SECONDS); the rows are written in one
  transaction (usage.calls_record_once: INSERT ... ON CONFLICT (handoff_id) DO NOTHING RETURNING, the
  roll-ups added for the rows inserted only); then the in-flight list is deleted. A batch written twice
  (a crash between the commit and the delete) therefore counts each call once, in rows and roll-ups.
  Its commit waits for the disk flush, as the direct path's does not (usage.call_record): the batch
  leaves Redis only once PostgreSQL holds it.
- The sweep: a drainer's in-flight list whose heartbeat has expired (its process died) goes back to
  the queue, at every drainer's start, every SWEEP_SECONDS in every drainer, and in the beat task
  `integrations.call_log_handoff_sweep`, which also drains the queue when no drainer is left to.
- A graceful stop (the prefork child's or the worker's shutdown) writes what the queue holds, up to
  STOP_SECONDS; a batch it could not write goes back to the queue for the other drainers.
- A batch that fails for a row (not the database) is written row by row; a row that fails on its own
  is moved to the FAILED list and logged with its provider, operation and request id: kept, never
  retried for ever ahead of the others.

What a crash loses: nothing acked. A worker killed after a hand-off leaves the row in the queue or in
its in-flight list, which the sweep returns within HEARTBEAT_SECONDS + SWEEP_SECONDS (~45 s); killed
before it, the message is not acked and is redelivered, as before. The rows are as durable as the
broker's messages on a Redis of the same configuration (persistence is Redis's: AOF or RDB).

What readers see: the row and the roll-ups (the usage API, the admin, the dashboard, budget alerts,
which the drainer checks after its commit) lag the call by BATCH_INTERVAL plus one batch's write,
~0.1 s, while PostgreSQL answers; while it does not, until it does (the rows wait in Redis). Failed
attempts are not handed off: their rows are written at once, because the next attempt reads them
(payments' refund retry asks whether an earlier attempt logged a refund.create; the breaker and the
failure-rate alerts read failures).

Erasures (privacy; integrations.privacy.erase_integrations re-points the user's call log at a pseudonym): a batch
is written, and a row that fails alone set aside, under a lock per owner held shared (integrations.erasing, the
protocol of every writer of the call log), and only then does the drainer read which of the batch's owners are
being erased: their rows are written (or set aside) for the erasure's pseudonym, as the erasure would have left them.
The erasure takes the owner's lock exclusively once it has started (status running): a batch that read its marker before is committed by then and re-pointed with the rest,
and every later one (a batch held while the erasure ran, a job that finished after it, a row set aside) finds it.
The rows already set aside are rewritten by the erasure under the same lock.

Anywhere else (web workers, eager tasks in tests, management commands, `make run` without Redis) or
with CALL_LOG_HANDOFF off, no drainer runs and the gateway writes the row directly, so anything that
reads it right after the call still finds it. Tests drive a Drainer explicitly.
"""

import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction

from ..models import ProviderCall
from ..redis import get_client, key
from ..usage import budget_checks, calls_record_once

logger = logging.getLogger(__name__)

BATCH_INTERVAL = 0.05
MAX_ROWS = 100
HEARTBEAT_SECONDS = 30
SWEEP_SECONDS = 15
STOP_SECONDS = 10


def _keys():
    return {
        "queue": key("calllog", "queue"),
        "drainers": key("calllog", "drainers"),
        "failed": key("calllog", "failed"),
        "inflight": key("calllog", "inflight", ""),
        "alive": key("calllog", "alive", ""),
    }


# KEYS: queue, in-flight list, heartbeat, drainers; ARGV: max rows, heartbeat ms, drainer id.
# A drainer's unfinished batch (its write failed) is its next batch again, before anything new.
_TAKE = """
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then return held end
local rows = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #rows > 0 then
  redis.call('LTRIM', KEYS[1], #rows, -1)
  redis.call('RPUSH', KEYS[2], unpack(rows))
end
return rows
"""

# KEYS: drainers, queue; ARGV: in-flight key prefix, heartbeat key prefix, a drainer id to release ('' for
# none). The in-flight rows of every drainer without a heartbeat (and of the one released) go back to the
# front of the queue.
_SWEEP = """
local moved = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id == ARGV[3] or redis.call('EXISTS', ARGV[2] .. id) == 0 then
    local inflight = ARGV[1] .. id
    local rows = redis.call('LRANGE', inflight, 0, -1)
    for i = #rows, 1, -1 do redis.call('LPUSH', KEYS[2], rows[i]) end
    redis.call('DEL', inflight)
    redis.call('SREM', KEYS[1], id)
    if id == ARGV[3] then redis.call('DEL', ARGV[2] .. id) end
    moved = moved + #rows
  end
end
return moved
"""

_scripts = {}


def _script(client, name):
    entry = _scripts.get(name)
    if entry is None or entry[0] is not client:
        entry = _scripts[name] = (client, client.register_script(_TAKE if name == "take" else _SWEEP))
    return entry[1]


# --- rows as JSON ------------------------------------------------------------------------------------

_FIELDS = [f for f in ProviderCall._meta.concrete_fields if not f.primary_key]


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return value.hex
    raise TypeError(f"not serializable in a call-log row: {value!r}")


def dump(call):
    """A ProviderCall row (not saved) as the JSON the queue holds: its columns by name."""
    return json.dumps({f.attname: getattr(call, f.attname) for f in _FIELDS}, default=_default, separators=(",", ":"))


def load(raw):
    """The ProviderCall row (not saved) of one queued entry. Columns it does not name keep their defaults
    (a row queued before a deploy that added one); names the model no longer has are left out."""
    values = json.loads(raw)
    names = {f.attname for f in _FIELDS}
    row = {name: value for name, value in values.items() if name in names}
    row["created_at"] = dt.datetime.fromisoformat(row["created_at"])
    row["cost_usd"] = Decimal(row["cost_usd"])
    row["handoff_id"] = uuid.UUID(row["handoff_id"])
    return ProviderCall(**row)


# --- the drainer --------------------------------------------------------------------------------------


class Drainer:
    """One worker process's hand-off: `put` from its tasks, batches written by its thread (`start`)."""

    def __init__(self, *, interval=None, max_rows=MAX_ROWS, drainer_id=None):
        self.interval = BATCH_INTERVAL if interval is None else interval
        self.max_rows = max_rows
        self.id = drainer_id or uuid.uuid4().hex
        self.pid = os.getpid()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._next_sweep = 0.0

    # In the task's thread.

    def put(self, call):
        """Queue the row on Redis (one RPUSH); raises RedisError / OSError if Redis cannot be reached."""
        get_client().rpush(_keys()["queue"], dump(call))
        self._wake.set()

    # In the drainer's thread (or a test's).

    def drain_once(self):
        """One batch: take up to max_rows (or the unfinished one), write it, let it go. Returns the rows taken.

        A database error leaves the batch in flight, for the next round; Redis errors propagate."""
        client = get_client()
        raw = self.take()
        if not raw:
            return 0
        written = self._write(client, raw)
        client.delete(_keys()["inflight"] + self.id)
        try:
            budget_checks(written)
        except Exception:  # noqa: BLE001 - the rows are committed; a failed alert check must not stop the drainer
            logger.exception("call log hand-off: budget checks after a batch failed")
        return len(raw)

    def take(self):
        """Up to max_rows queued entries moved to this drainer's in-flight list (or the unfinished batch it
        holds), its heartbeat refreshed: one Lua script, atomic."""
        keys = _keys()
        return _script(get_client(), "take")(
            keys=[keys["queue"], keys["inflight"] + self.id, keys["alive"] + self.id, keys["drainers"]],
            args=[self.max_rows, HEARTBEAT_SECONDS * 1000, self.id],
        )

    def _write(self, client, raw):
        calls, bad = [], []
        for entry in raw:
            try:
                calls.append(load(entry))
            except Exception:  # noqa: BLE001 - an entry no version of the hub can read: kept aside, not retried
                bad.append(entry)
        if bad:
            _park(client, bad, None)
        if not calls:
            return []
        try:
            with transaction.atomic():
                return calls_record_once(_as_owned_now(calls))
        except (OperationalError, InterfaceError):
            raise  # the database, not a row: the whole batch waits in flight for the next round
        except Exception:  # noqa: BLE001 - one bad row must not take the batch: each on its own
            return self._one_by_one(client, calls)

    def _one_by_one(self, client, calls):
        written = []
        for call in calls:
            try:
                with transaction.atomic():
                    written += calls_record_once(_as_owned_now([call]))
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:  # noqa: BLE001 - this row alone fails: kept aside and reported
                # Set aside as it would have been written, under its owner's lock: an erasure rewrites the set-aside
                # rows of its user under its own, so none of them is left there un-pseudonymised.
                with transaction.atomic():
                    _park(client, [dump(c) for c in _as_owned_now([call])], exc, call)
        return written

    def sweep(self, release=False):
        """Return the in-flight rows of drainers whose heartbeat expired (and this one's, `release`) to the queue."""
        keys = _keys()
        moved = _script(get_client(), "sweep")(
            keys=[keys["drainers"], keys["queue"]],
            args=[keys["inflight"], keys["alive"], self.id if release else ""],
        )
        if moved:
            logger.warning("call log hand-off: %d rows of stopped drainers back in the queue", moved)
        return moved

    def drain(self, seconds):
        """Batches until the queue is empty or `seconds` have passed (a stop, the beat task); returns rows taken."""
        deadline = time.monotonic() + seconds
        total = 0
        while time.monotonic() < deadline:
            taken = self.drain_once()
            total += taken
            if taken < self.max_rows:
                break
        return total

    def _round(self):
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_SECONDS
            self.sweep()
        while self.drain_once() >= self.max_rows and not self._stopping.is_set():
            pass

    def _run(self):
        try:
            while not self._stopping.is_set():
                self._wake.wait(HEARTBEAT_SECONDS / 3)  # a hand-off, or time to keep the heartbeat and sweep
                if self._stopping.wait(self.interval):  # gather what the next jobs hand off meanwhile
                    break
                self._wake.clear()
                try:
                    self._round()
                except Exception:  # noqa: BLE001 - the thread must outlive any one round (Redis or PostgreSQL down)
                    logger.exception("call log hand-off: a round of the drainer failed; trying again")
                    self._stopping.wait(1)
                finally:
                    _release_connections()
        finally:
            connections.close_all()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="call-log-handoff", daemon=True)
        self._thread.start()
        return self

    def stop(self, seconds=STOP_SECONDS):
        """Stop the thread, write what the queue holds (up to `seconds`), give back a batch it could not write."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(seconds)
        try:
            self.drain(seconds)
        except Exception:  # noqa: BLE001 - the other drainers (or the next start) write it
            logger.exception("call log hand-off: writing the rest at stop failed; left in the queue")
        finally:
            try:
                self.sweep(release=True)
            except Exception:  # noqa: BLE001 - Redis is down: the sweep of a live drainer returns it later
                logger.exception("call log hand-off: giving back the unfinished batch failed")


# --- erasures (integrations.privacy) -------------------------------------------------------------------


def _as_owned_now(calls):
    """`calls` as they are written now, in the caller's transaction: their owners' locks held (integrations.erasing),
    the rows of a user whose erasure has started handed to its pseudonym as the erasure hands the call log."""
    from ..privacy import calls_as_owned_now

    return calls_as_owned_now(calls)


# KEYS: the FAILED list; ARGV: pairs of an entry and what it becomes. Each pair rewrites one occurrence, in place.
_REWRITE = """
local n = 0
for i = 1, #ARGV, 2 do
  local at = redis.call('LPOS', KEYS[1], ARGV[i])
  if at then
    redis.call('LSET', KEYS[1], at, ARGV[i + 1])
    n = n + 1
  end
end
return n
"""


def set_aside_rewritten(owner_id, values):
    """The rows of `owner_id` waiting in the FAILED list given `values` (column names: values) in place (an erasure:
    no drainer writes them until staff put them back). Returns how many were rewritten."""
    client = get_client()
    failed = _keys()["failed"]
    pairs = []
    for entry in client.lrange(failed, 0, -1):
        try:
            row = json.loads(entry)
        except ValueError:
            continue  # unreadable: nothing tells whose it is (the worker log reported it)
        if not isinstance(row, dict) or row.get("owner_id") != owner_id:
            continue
        row.update(values)
        pairs += [entry, json.dumps(row, default=_default, separators=(",", ":"))]
    if not pairs:
        return 0
    return client.register_script(_REWRITE)(keys=[failed], args=pairs)


def _release_connections():
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()


def _park(client, entries, error, call=None):
    client.rpush(_keys()["failed"], *entries)
    what = f"{call.provider} {call.operation} request {call.request_id or '-'}" if call else "unreadable entries"
    logger.error(
        "call log hand-off: %d ProviderCall rows not written (%s); kept in Redis list %s",
        len(entries),
        what,
        _keys()["failed"],
        exc_info=error,
    )


# --- this process's drainer ---------------------------------------------------------------------------

_enabled = False
_drainer = None
_lock = threading.Lock()


def enable():
    """Hand off in this worker (Celery's worker_init, before a prefork pool forks: its children inherit it).

    The drainer itself starts in the process that first hands a row off, never before a fork."""
    global _enabled
    _enabled = bool(settings.CALL_LOG_HANDOFF and settings.REDIS_URL)


def drainer():
    """This process's running drainer, started on first use; None where rows are written directly."""
    global _drainer
    if not _enabled:
        return None
    current = _drainer
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _drainer is None or _drainer.pid != os.getpid():  # none yet, or the parent's before a fork
            _drainer = Drainer().start()
        return _drainer


# Successful calls whose row a later attempt reads back to decide what to do: payments' refund retry asks
# whether an earlier attempt may have created the refund at Stripe (payments.services.refunds._maybe_sent), and
# a retry after a worker died must find that row, not one still waiting in a dead drainer's batch. Written at once;
# they are few, so the hand-off's gain is not theirs to give.
WRITTEN_AT_ONCE = frozenset({"refund.create"})


def hand_off(call):
    """Queue a successful call's row for this process's drainer; False (nothing queued) where rows are
    written directly, for an operation in WRITTEN_AT_ONCE, or when Redis cannot be reached: the caller
    writes it then."""
    if call.operation in WRITTEN_AT_ONCE:
        return False
    current = drainer()
    if current is None:
        return False
    call.handoff_id = uuid.uuid4()
    try:
        current.put(call)
    except Exception as exc:  # noqa: BLE001 - Redis unreachable (or refusing): the row is written directly instead
        call.handoff_id = None
        logger.warning("call log hand-off: Redis refused the row (%r); writing it directly", exc)
        return False
    return True


def stop(seconds=STOP_SECONDS):
    """Stop this process's drainer, writing what is left (a prefork child's or the worker's shutdown); rows
    are written directly from then on (a worker started inside another process, as tests do, ends here)."""
    global _drainer, _enabled
    _enabled = False
    with _lock:
        current = _drainer if _drainer is not None and _drainer.pid == os.getpid() else None
        _drainer = None
    if current is not None:
        current.stop(seconds)


def sweep_and_drain(seconds=STOP_SECONDS):
    """The beat task's work: return dead drainers' batches to the queue and write what is waiting there
    (rows no live drainer takes: every worker that handed them off has stopped). Returns rows written."""
    if not settings.REDIS_URL:
        return 0
    helper = Drainer()
    try:
        helper.sweep()
        return helper.drain(seconds)
    finally:
        helper.sweep(release=True)
        _set_aside_alert()


def _set_aside_alert():
    """Staff are told while rows wait in the FAILED list: nothing writes them again by itself (each failed alone,
    so retrying blindly would fail again); the worker log names each one's provider, operation and request id."""
    from ..alerts import alert_raise
    from ..models import Alert

    keys = _keys()
    waiting = get_client().llen(keys["failed"])
    if waiting:
        alert_raise(
            kind=Alert.Kind.OPERATIONS,
            dedupe_key="calllog:failed",
            message=f"{waiting} call-log rows could not be written to PostgreSQL and are kept in Redis list "
            f"{keys['failed']} (the worker log says why). Once the cause is fixed, move them back onto "
            f"{keys['queue']} (LMOVE) and the drainers write them, exactly once.",
        )
