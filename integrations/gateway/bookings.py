"""Answered AI calls booked by one thread per web worker, in batches: the call row with the caller's booking.

A non-streamed completion is answered before its ProviderCall row, usage roll-up,
request log and budget settlement are written (`att.book_later`). As a task of
its own each answer's booking was an asyncio task, a sync_to_async hop to a
thread and a round trip. In a web worker under the ASGI server (started at
lifespan startup with the connection pool, config.asgi) `put` hands the booking
to this writer instead, at the cost of a list append: its one thread writes
what has gathered as one query string per provider (integrations.aio.at_once:
one round trip, one transaction, all or nothing) as soon as it is free, so a
quiet worker books each answer right after it as before, and a busy one books
whatever came in while the previous round was being written, in one round trip
(as a group commit does) instead of one hop and commit each.

A round starts AI_BOOKING_ROUND_MS after the first booking it writes came in (at once when MAX_BOOKINGS
are waiting, or with the setting 0): started right after each answer, the round ran while the same
client's next request was being served, and the two threads' turns at the GIL added ~2 ms to a
sequential client's every completion (bench/profile_ai_request.py: the token's Redis read 0.09 ms alone,
0.4 ms beside a round; bench/ab_ai_serving.py: hub added latency 8.3 -> 6.2 ms with 50 ms). Now the
answers of the window share one round: most requests run beside none, and a round costs its CPU once
for them all.

Money stays exact: each booking is the same statements as on its own (the
call's row and roll-ups, the usage roll-up, the request log, the settlement of
the request's budget hold: `att.then_at_once()`), built in the request's own
context (its request id); until they commit, the hold still covers at least the
answer's cost, so no concurrent request can spend past the budget. Locks are
taken in one order: one transaction per provider (its hourly roll-up row
first), the bookings in it by owner, so two workers' batches cannot deadlock.
If a batch fails, each booking is written on its own, step by step as before
(_write_ok_then: the call's row is kept if its booking fails, and
`att.then_failed()` frees the hold and the Idempotency-Key).

What a killed worker loses: the bookings waiting for the writer and the round
it is writing (uncommitted), the answers of the last AI_BOOKING_ROUND_MS and a few more, as a
task that had not run its hop yet was lost before: their call rows, usage and
request logs; their holds stay reserved until the month ends, so the user is
refused early rather than let past the budget. A graceful stop (the lifespan's
shutdown, `stop`) writes them all. A request's logged latency ends at its
answer (Booking.answered_at_once's `finished`), not at its round.

Anywhere else (tests without a started writer, Celery workers, SQLite) `writer()`
is None and the answer's booking is a background hop as before (aio.in_background).
"""

import asyncio
import contextvars
import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import DatabaseError

from ..aio import at_once, close_connections
from ..erasing import guard_statements
from ..models import ProviderCall
from ..usage import call_record_statement, call_recorded_as
from .calllog import call_recorded, call_row

logger = logging.getLogger(__name__)

MAX_BOOKINGS = 50  # per query string: each booking is ~10 kB of SQL

_writer = None


def writer():
    """The running writer of this process, or None."""
    return _writer


class BookingWriter:
    def __init__(self, max_bookings=None, delay_ms=None):
        self.max_bookings = max_bookings or MAX_BOOKINGS
        self.delay = (settings.AI_BOOKING_ROUND_MS if delay_ms is None else delay_ms) / 1000
        self._waiting = []  # (attempt, latency_ms, the request's context)
        self._lock = threading.Lock()
        self._scheduled = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="bookings")
        self._done = threading.Condition()
        self._queued = self._handled = 0

    def put(self, att, latency_ms):
        """Book `att` (its `then_at_once` given); called on the event loop, so it only queues.

        The writer's thread is handed a round `delay` after the first booking it will write (once the loop is
        next free when there is no delay, or MAX_BOOKINGS are waiting), unless one is already waiting to
        start: what is put meanwhile goes in that round. Handed over at once, the thread took the GIL from
        the loop while it still sent this answer."""
        with self._lock:
            self._waiting.append((att, latency_ms, contextvars.copy_context()))
            self._queued += 1
            full = len(self._waiting) >= self.max_bookings
            if self._scheduled and not full:
                return
            self._scheduled = True
        loop = asyncio.get_running_loop()
        if self.delay and not full:
            loop.call_later(self.delay, self._hand_over, loop)
        else:
            loop.call_soon(self._hand_over, loop)  # after this task's step: the answer is sent by then

    def _hand_over(self, loop):
        try:
            loop.run_in_executor(self._thread, self._round)
        except RuntimeError:  # stopped meanwhile (the worker's shutdown, after its last round): a round of its own
            loop.run_in_executor(None, self._round)

    def drain(self, timeout=10):
        """Wait until what was put before this call is written (or given up); True if it was in time."""
        with self._lock:
            target = self._queued
        with self._done:
            return self._done.wait_for(lambda: self._handled >= target, timeout)

    def _round(self):
        with self._lock:
            self._scheduled = False  # a booking put from now on starts the next round
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - logged here: nobody awaits the round's future
            logger.exception("bookings: a round of the writer failed")

    def flush(self):
        """Write what has gathered: one round trip per provider and MAX_BOOKINGS (the writer's thread; at stop)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        try:
            waiting.sort(key=lambda entry: (entry[0].provider, entry[0].owner_id or 0))
            for _, group in itertools.groupby(waiting, key=lambda entry: entry[0].provider):
                group = list(group)
                for at in range(0, len(group), self.max_bookings):
                    _write_group(group[at : at + self.max_bookings])
        finally:
            close_connections()  # back to the pool between rounds
            with self._done:
                self._handled += len(waiting)
                self._done.notify_all()

    def stop(self, timeout=10):
        """Let the rounds handed out end, then write what is left (the web worker's shutdown)."""
        self._thread.shutdown(wait=True)
        self.flush()


def _built(att, latency_ms):
    """The booking's statements: the call's row and roll-ups, then the caller's; and what to run once committed."""
    call = call_row(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms)
    statements, after = att.then_at_once()
    return call, [call_record_statement(call), *statements], after


def _recorded(att, call, rows, after):
    att.row = call_recorded_as(call, rows[0])
    # The caller's first (its budget settlement's own accounting: an AI budget lease's, ai.leases): a metric or
    # alert check that fails after it must not leave that undone.
    after(rows[1:])
    call_recorded(att, call, checks=True)


def _alone(entry):
    """One booking written on its own, as a background hop writes it (aio.in_background)."""
    from .asynchronous import _write_ok_then

    att, latency_ms, context = entry
    try:
        context.run(_write_ok_then, att, latency_ms=latency_ms)
    except Exception as exc:  # noqa: BLE001 - the answer is sent; then_failed has undone what it must
        logger.error("bookings: %s %s not booked: %r", att.provider, att.operation, exc, exc_info=exc)


def _write_group(group):
    built = []
    for entry in group:
        att, latency_ms, context = entry
        try:
            built.append((entry, context.run(_built, att, latency_ms)))
        except Exception:  # noqa: BLE001 - this booking's statements could not be built: its steps, on its own
            _alone(entry)
    if not built:
        return
    # The owners' locks and the check that none of them is being erased, once for the batch, in its round trip: a
    # batch with an answer of a user whose erasure has started is written booking by booking, each for its owner
    # as of then (the pseudonym's, integrations.erasing).
    guard = guard_statements(att.owner_id for (att, _, _), _ in built)
    try:
        rows = at_once([*guard, *(statement for _, (_, statements, _) in built for statement in statements)])
    except DatabaseError as exc:
        logger.warning("bookings: a batch of %d failed, writing each on its own: %r", len(built), exc)
        for entry, _ in built:
            _alone(entry)
        return
    start = len(guard)
    for (att, _, context), (call, statements, after) in built:
        mine, start = rows[start : start + len(statements)], start + len(statements)
        try:
            context.run(_recorded, att, call, mine, after)
        except Exception:  # noqa: BLE001 - committed; a failed metric or alert check must not stop the others
            logger.exception("bookings: after %s %s was booked", att.provider, att.operation)


def start():
    """Run a writer in this process (ASGI lifespan startup), its thread started now; returns it.

    A thread pool starts its thread on first use: there, a fresh worker's first answer's hand-over held the
    event loop 3-10 ms (0.2 ms of it CPU: starting the thread, then waiting for the GIL while it ran the
    round) as the client's next request came in."""
    global _writer
    if _writer is None:
        _writer = BookingWriter()
        _writer._thread.submit(int).result()
    return _writer


def stop(timeout=10):
    """Stop this process's writer, writing what is left (ASGI lifespan shutdown)."""
    global _writer
    current, _writer = _writer, None
    if current is not None:
        current.stop(timeout)
