"""The call-log rows of answered web requests, written by one thread per web worker in batches.

A provider call a client waits on (a flight search: `attempt(..., log_after_response=True)`)
has its ProviderCall row, roll-ups and budget check written once the answer is out. Without a
writer that is a second hop to a thread after each answer, with its own connection checkout
and commit, right when the worker starts on the next request (bench_travel: ~1 ms of CPU a
search). In a web worker under the ASGI server (started at lifespan startup, config.asgi)
the row goes to this writer instead: every BATCH_INTERVAL seconds, or sooner once MAX_ROWS
are waiting, one thread writes what has gathered in one statement (usage.calls_record:
the rows, and each roll-up row they touch added to once). The web process's
shutdown (lifespan) writes what is left. If the database is unreachable the rows wait for the
next round; if the batch fails otherwise, each row is tried on its own (one bad row does not
take the others). A row that still fails is kept for the next round, up to ATTEMPTS rounds, then logged as lost (the log line names its provider,
operation and request id): the answer it belongs to was sent long before. A worker killed
outright loses at most the last BATCH_INTERVAL's rows.

Anywhere else (a sync server, tests, Celery workers, management commands) no writer runs
and `writer()` is None: the gateway writes as before.
"""

import logging
import threading

from django.db import InterfaceError, OperationalError, transaction

from ..aio import close_connections
from ..models import ProviderCall
from ..privacy import calls_as_owned_now
from ..usage import budget_checks, calls_record
from .calllog import _write, call_recorded, call_row

logger = logging.getLogger(__name__)

BATCH_INTERVAL = 0.05
MAX_ROWS = 200
ATTEMPTS = 3

_writer = None


def writer():
    """The running writer of this process, or None."""
    return _writer


class CallLogWriter:
    def __init__(self, interval=None, max_rows=MAX_ROWS):
        self.interval = interval or BATCH_INTERVAL
        self.max_rows = max_rows
        self._rows = []  # [attempt, latency_ms, request_id, rounds tried]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="call-log", daemon=True)

    def put(self, att, latency_ms, request_id):
        with self._lock:
            self._rows.append([att, latency_ms, request_id, 0])
            full = len(self._rows) >= self.max_rows
        if full:
            self._wake.set()

    def pending(self):
        with self._lock:
            return len(self._rows)

    def _run(self):
        while not self._stopping:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive any one round, or every later row waits for ever
                logger.exception("call log: a round of the writer failed")

    def flush(self):
        """Write what has gathered (called by the writer's thread, and once more at stop)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            try:
                with transaction.atomic():
                    written = _write_rows(rows)
            except (OperationalError, InterfaceError) as exc:  # the database, not a row: all wait for the next round
                self._retry_or_drop(rows, exc)
            except Exception:  # noqa: BLE001 - one bad row must not take the batch: each on its own
                self._one_by_one(rows)
            else:
                try:
                    _checks(written)
                except Exception:  # noqa: BLE001 - the rows are committed; a failed alert check must not stop the writer
                    logger.exception("call log: budget checks after a batch failed")
        finally:
            close_connections()  # back to the pool between rounds

    def _one_by_one(self, rows):
        failed, error = [], None
        for i, row in enumerate(rows):
            try:
                with transaction.atomic():
                    _write_row(row)
            except (OperationalError, InterfaceError) as exc:  # the database went away: the rest wait too
                failed, error = failed + rows[i:], exc
                break
            except Exception as exc:  # noqa: BLE001 - kept for the next round, or reported as lost
                failed.append(row)
                error = exc
        if failed:
            self._retry_or_drop(failed, error)

    def _retry_or_drop(self, rows, error):
        keep, lost = [], []
        for row in rows:
            row[3] += 1
            (keep if row[3] < ATTEMPTS else lost).append(row)
        if lost:
            logger.error(
                "call log: %d ProviderCall rows not written after %d attempts: %s",
                len(lost),
                ATTEMPTS,
                "; ".join(f"{a.provider} {a.operation} request {rid or '-'}" for a, _, rid, _ in lost),
                exc_info=error,
            )
        if keep:
            logger.warning("call log: writing %d ProviderCall rows failed; trying again: %r", len(keep), error)
        with self._lock:
            self._rows[:0] = keep

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout=10):
        """Stop the thread and write what is left (the web worker's shutdown)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        for _ in range(ATTEMPTS):
            if not self.pending():
                return
            self.flush()


def _write_row(row):
    att, latency_ms, request_id, _ = row
    _write(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms, request_id=request_id)


def _write_rows(rows):
    """All the rows in one statement (usage.calls_record), in the caller's transaction; [(attempt, call)].

    Their owners' locks are taken and their erasures read once for the batch, as the hand-off's drainer does: a
    row of a user whose erasure has started is written for its pseudonym (integrations.privacy.calls_as_owned_now).
    """
    atts = [att for att, _, _, _ in rows]
    calls = calls_as_owned_now(
        [
            call_row(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms, request_id=request_id)
            for att, latency_ms, request_id, _ in rows
        ]
    )
    calls_record(calls)
    return list(zip(atts, calls, strict=True))


def _checks(written):
    """Metrics for each call; the budget alerts once per provider and owner that spent (after the commit)."""
    for att, call in written:
        call_recorded(att, call, checks=False)
    budget_checks([call for _, call in written])


def start():
    """Run a writer in this process (ASGI lifespan startup); returns it."""
    global _writer
    if _writer is None:
        _writer = CallLogWriter().start()
    return _writer


def stop(timeout=10):
    """Stop this process's writer, writing what is left (ASGI lifespan shutdown)."""
    global _writer
    current, _writer = _writer, None
    if current is not None:
        current.stop(timeout)
