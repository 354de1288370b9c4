"""Helpers for async request paths (the AI endpoints under ASGI).

    payload = await db_hop(book_answer, result, cost=cost)

`db_hop` runs a piece of synchronous, database-touching work in the request's
thread (Django's thread-sensitive `sync_to_async`), then hands the connection
back to the pool when the web server runs with one (DATABASE_POOL): a stream
that lasts a minute then holds a database connection only for the
milliseconds its bookings take, not for the whole minute.

`in_background` runs such work without the request awaiting it: the
bookkeeping of an answer that is already on its way to the client.
"""

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)


def release_connections():
    """Return pooled connections opened by this thread (never inside a transaction)."""
    for conn in connections.all(initialized_only=True):
        if conn.settings_dict.get("OPTIONS", {}).get("pool") and not conn.in_atomic_block:
            conn.close()


def _hop(fn, args, kwargs):
    try:
        return fn(*args, **kwargs)
    finally:
        release_connections()


def close_connections():
    """This thread's connections outside a transaction: back to the pool, or closed without one. For threads of the
    hub's own (hops, the batch writers, the lease sweeper), which no request_finished reaches."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def _hop_on_own_thread(fn, args, kwargs):
    try:
        return fn(*args, **kwargs)
    finally:
        close_connections()


@functools.cache
def _threads(count, name="db-hop"):
    return ThreadPoolExecutor(count, thread_name_prefix=name)


async def db_hop(fn, /, *args, **kwargs):
    """`fn(*args, **kwargs)` off the event loop, its pooled connection released after.

    With a connection pool (the ASGI server) the work runs on DB_HOP_THREADS
    threads of its own, so concurrent requests' hops overlap (each hop is its
    own transaction and checks a connection out for just that long). Without
    one (SQLite, tests inside a test transaction) on Django's one shared thread.
    """
    if settings.DB_HOP_THREADS:
        executor = _threads(settings.DB_HOP_THREADS)
        return await sync_to_async(_hop_on_own_thread, thread_sensitive=False, executor=executor)(fn, args, kwargs)
    return await sync_to_async(_hop)(fn, args, kwargs)


async def db_hop_or_undo(undo, fn, /, *args, **kwargs):
    """`db_hop(fn, ...)` that, if the request is cancelled meanwhile (its client went away), still waits
    for the hop's thread, which runs to its end whatever happens here, and then runs `undo()` in a hop of
    its own to give back what `fn` took (a budget hold, a claimed Idempotency-Key) before re-raising."""
    hop = asyncio.ensure_future(db_hop(fn, *args, **kwargs))
    try:
        return await asyncio.shield(hop)
    except asyncio.CancelledError:
        if not hop.cancelled():
            with contextlib.suppress(Exception):  # fn failed: it took nothing (or gave it back itself)
                await hop
                await db_hop(undo)
        raise


async def view_hop(fn, /, *args, **kwargs):
    """`fn(*args, **kwargs)` on the sync views' own SYNC_VIEW_THREADS threads (config.asgi_handler).

    Apart from db_hop's threads: a request waits behind other requests' views, never behind a burst of
    AI bookings. Only with a connection pool (SYNC_VIEW_THREADS > 0).
    """
    executor = _threads(settings.SYNC_VIEW_THREADS, "sync-view")
    return await sync_to_async(_hop_on_own_thread, thread_sensitive=False, executor=executor)(fn, args, kwargs)


async def webhook_hop(fn, /, *args, **kwargs):
    """view_hop for webhook deliveries, on WEBHOOK_THREADS threads of their own: a provider's delivery is
    acknowledged in milliseconds even while every API thread waits on a slow provider call, and a few
    threads ack a burst with less CPU each than many fighting over the GIL (bench_inbox)."""
    executor = _threads(settings.WEBHOOK_THREADS, "webhook")
    return await sync_to_async(_hop_on_own_thread, thread_sensitive=False, executor=executor)(fn, args, kwargs)


NO_FLUSH_WAIT = "SET LOCAL synchronous_commit TO OFF"


def commit_without_flush_wait():
    """Inside a transaction: its COMMIT returns before PostgreSQL has flushed it to disk.

    For the bookings of a request a client waits on (the AI endpoints): a
    synchronous commit waits for the WAL flush, 3.5-5.5 ms median on this
    machine's disk and more under load, once per booking. With
    `synchronous_commit=off` for just this transaction the data stays
    consistent (nothing half-written, nothing reordered); what a PostgreSQL
    crash (not a hub crash) can lose is the last ~0.6 s of such commits
    (3 x wal_writer_delay). Never used for rows a provider relies on after we
    answer it (the webhook inbox) or for money the hub moves (payments' own
    rows; the call log of their provider calls is, see usage.call_record).
    """
    connection = connections["default"]
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(NO_FLUSH_WAIT)


def can_send_at_once():
    """True where `at_once` works: PostgreSQL, outside any transaction of the caller's."""
    connection = connections["default"]
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def at_once(statements):
    """[(sql, params)] sent to PostgreSQL as one query string: one round trip and one implicit transaction,
    all or nothing, whose commit does not wait for the disk flush (as commit_without_flush_wait's).

    Returns each statement's first result row (None for one that returns no rows). A failure raises the
    database's error with nothing written. Only where can_send_at_once(): a query string of several
    statements runs in a transaction of its own, and inside the caller's the SET LOCAL would cover the
    caller's own writes too."""
    sql = "; ".join([NO_FLUSH_WAIT, *(statement for statement, _ in statements)])
    params = [value for _, values in statements for value in values]
    rows = []
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, params)
        for _ in statements:
            cursor.nextset()  # the first result is SET's
            rows.append(cursor.fetchone() if cursor.description else None)
    return rows


# --- work the answer does not wait for ------------------------------------------------
#
# A non-streamed AI answer is sent as soon as the provider has answered; its
# call row, roll-ups, budget settlement and request log (one commit) follow in a
# task of their own, so the client's latency holds no database write. That
# needs a loop that outlives the request: the ASGI server's, marked at lifespan
# startup (config.asgi). Anywhere else (a sync server running the async view
# in a loop of its own, the test client) the work is awaited as before. The
# tasks are kept here until they end (asyncio holds only weak references to
# tasks), a failure is logged (the client already has its answer; the caller's
# `then_failed` undoes what it must, e.g. the budget hold), and the lifespan's
# shutdown waits for what is still pending.

_pending = set()
_server_loop = None


def serve_on(loop):
    """Mark `loop` as the server's (ASGI lifespan startup): work may outlive a request on it."""
    global _server_loop
    _server_loop = loop


async def in_background(fn, /, *args, **kwargs):
    """`db_hop(fn, *args, **kwargs)` without waiting for it on the server's loop; awaited elsewhere."""
    loop = asyncio.get_running_loop()
    if loop is not _server_loop:
        await db_hop(fn, *args, **kwargs)
        return
    task = loop.create_task(db_hop(fn, *args, **kwargs))
    _pending.add(task)
    task.add_done_callback(_finished)


def track(task):
    """Count `task` as background work of its loop: `settle()` waits for it and a failure is logged."""
    _pending.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task):
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        logger.error("background database work failed: %r", exc, exc_info=(type(exc), exc, exc.__traceback__))


async def settle(timeout=None):
    """Wait (up to `timeout` seconds) for the background work started on this loop, then for the bookings
    handed to this process's writer (gateway.bookings); returns how many tasks are left."""
    from integrations.gateway import bookings  # the gateway builds on this module

    loop = asyncio.get_running_loop()
    mine = [task for task in _pending if task.get_loop() is loop]
    if mine:
        await asyncio.wait(mine, timeout=timeout)
    writer = bookings.writer()
    if writer is not None:
        await loop.run_in_executor(None, writer.drain, 10 if timeout is None else timeout)
    return sum(1 for task in mine if not task.done())
