"""The same attempt from async code (the AI request path).

Same rules, same ProviderCall row, same breaker and limiter state; what differs
is only how it waits. Redis is asked through the asyncio client, the call-log
write (and the alerts it may raise) runs in a thread, and a missing rate token
is awaited when it comes before the caller's deadline: a web request is not a
Celery task that could come back later, and an await holds no worker.
"""

import asyncio
import contextlib
import logging
import time

from django.conf import settings
from django.db import DatabaseError, transaction

from .. import breaker, limiter, metrics
from ..aio import at_once, can_send_at_once, commit_without_flush_wait, db_hop, in_background
from ..erasing import guard_statements
from ..errors import (
    RateLimited,
)
from ..models import ProviderCall
from ..registry import require
from ..usage import call_record_statement, call_recorded_as
from . import bookings
from .calllog import Attempt, _write, call_recorded, call_row
from .outcome import Failure, _breaker_waits_on_news, _refused

logger = logging.getLogger(__name__)


def _max_wait(deadline):
    left = None if deadline is None else deadline - time.monotonic()
    return min(settings.RATE_LIMIT_MAX_RESERVE_SECONDS, left) if left is not None else 0.0


async def atake_token(
    provider, scope=None, *, bucket="requests", cost=1, deadline=None, breaker_key=None, first=None, taken=None
):
    """A token now, or after an await that ends before `deadline` (a time.monotonic() value); else RateLimited.

    Returns the Decision when the token was granted at once (with `breaker_key`'s state read in the same round
    trip), None after a wait (what it read is old by then). `first`: (bucket, cost) of another bucket of the
    scope to take from before, by the same rules, in the same round trip when both have a token at once.
    `taken`: the Decision of that same round trip made ahead (send_token_ahead), used instead of asking again."""
    max_wait = _max_wait(deadline)
    decision = taken
    if decision is None:
        decision = await limiter.atake(
            provider,
            scope,
            bucket=bucket,
            cost=cost,
            reserve=max_wait > 0,
            max_wait=max_wait,
            breaker_key=breaker_key,
            first=first,
        )
    if decision.first_only:
        # The first bucket's answer (no token at once there): wait for it or be refused, then this bucket's.
        await _waited(provider, scope, decision)
        return await atake_token(provider, scope, bucket=bucket, cost=cost, deadline=deadline, breaker_key=breaker_key)
    if decision.granted:
        return decision
    await _waited(provider, scope, decision)
    return None


async def _waited(provider, scope, decision):
    """A token not granted at once: await the one the bucket booked for this call, else RateLimited."""
    if decision.reserved:
        # The bucket booked a future token for this call (so waiters queue in
        # order instead of polling); the wait fits inside the deadline.
        await asyncio.sleep(decision.wait)
        return
    metrics.provider_calls.labels(provider, "-", "deferred").inc()
    raise RateLimited(provider, scope, decision.wait)


def send_token_ahead(provider, scope=None, *, rate_cost=1, deadline=None, circuit=None, first_token=None):
    """The Redis round trip that `aattempt` with these arguments starts with (its tokens and its breaker's
    state), sent now from a thread, to be read after other work there (limiter.SentTake.answer) and handed to
    that attempt as `taken`. None: it cannot be sent ahead (no Redis, not limited); the attempt takes its own.

    Rate tokens waited for are waited for after the work, never before the bucket allows: only later."""
    max_wait = _max_wait(deadline)
    return limiter.send_take(
        provider,
        scope,
        cost=rate_cost,
        reserve=max_wait > 0,
        max_wait=max_wait,
        breaker_key=breaker.state_key(circuit or provider),
        first=first_token,
    )


@contextlib.asynccontextmanager
async def aattempt(
    provider,
    operation,
    *,
    owner=None,
    scope=None,
    idempotency_key=None,
    related=None,
    rate_cost=1,
    attempt_no=1,
    deadline=None,
    circuit=None,
    first_token=None,
    taken=None,
):
    """`attempt` for async callers; a rate token is awaited up to `deadline` (time.monotonic()).

    `first_token`: (bucket, cost) taken before the request's token by the same rules (atake_token's `first`),
    e.g. an AI completion's tokens per minute: one Redis round trip for both, and the breaker's state.
    `taken`: those tokens and that state, taken ahead for this attempt (send_token_ahead, a limiter.Taken): used
    instead of the round trip, and given back if the attempt stops before it would have taken them."""
    try:
        require(provider)
    except BaseException:
        if taken is not None:
            await in_background(taken.give_back)
        raise
    circuit = circuit or provider

    decision = await atake_token(
        provider,
        scope,
        cost=rate_cost,
        deadline=deadline,
        breaker_key=breaker.state_key(circuit),
        first=first_token,
        taken=None if taken is None else taken.decision,
    )

    att = Attempt(provider, operation, owner, scope, idempotency_key, related, attempt_no)

    permit = breaker.closed_permit(decision and decision.breaker) or await breaker.abefore_call(circuit)
    if not permit.allowed:
        raise await db_hop(_refused, att, permit)

    started = time.perf_counter()
    try:
        yield att
    except BaseException as exc:
        failure = Failure(att, exc, permit, started)
        if failure.pause:
            await limiter.ablock(provider, scope, failure.pause)
        await db_hop(failure.log)
        if failure.healthy is not None:
            await breaker.aafter_call(circuit, healthy=failure.healthy)
        if failure.error is exc:
            raise
        raise failure.error from exc
    latency_ms = (time.perf_counter() - started) * 1000
    writer = bookings.writer() if att.book_later and att.then_at_once is not None else None
    if writer is not None:
        # The caller answers from what it holds; the row and its booking go with the worker's next batch.
        writer.put(att, latency_ms)
    elif att.book_later:
        # The caller answers from what it holds; the row and its booking are written meanwhile.
        await in_background(_write_ok_then, att, latency_ms=latency_ms)
    else:
        await db_hop(_write_ok_then, att, latency_ms=latency_ms)
    if _breaker_waits_on_news(permit):
        await breaker.aafter_call(circuit, healthy=True)


def _write_ok_then(att, *, latency_ms):
    """The call's row and, in the same thread hop and commit, the caller's own booking (`att.then`).

    Where it can (PostgreSQL, `att.then_at_once` given) all of it goes in one round trip first
    (_write_ok_at_once); if that fails nothing was written, and the steps below follow.

    The booking runs in a savepoint: if it fails, the call's row is still kept
    (the provider was called), `att.then_failed()` runs after the rollback, and
    the error goes on to the caller (or to the log, when `att.book_later`). A client
    waits on this path (the async endpoints), so the commit does not wait for
    the disk flush (aio.commit_without_flush_wait)."""
    if att.then_at_once is not None and can_send_at_once() and _write_ok_at_once(att, latency_ms):
        return
    with transaction.atomic():
        commit_without_flush_wait()
        _write(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms)
        if att.then is None:
            return
        try:
            with transaction.atomic():
                att.then()
        except Exception as exc:  # noqa: BLE001 - re-raised once the call's row is committed
            failure = exc
        else:
            return
    if att.then_failed is not None:
        att.then_failed()
    raise failure


def _write_ok_at_once(att, latency_ms):
    """The call's row and the caller's booking as one query string (aio.at_once: one round trip, one
    commit, all or nothing): `att.then_at_once()` gives the booking's statements and what to run once
    they are committed. An answer's booking was nine round trips (BEGIN, SET, the row, SAVEPOINT, three
    statements, RELEASE, COMMIT), each with its cost in this process and in PostgreSQL, on the cores the
    next request needs. False when nothing was written (the statements could not be built, or the database refused them): the
    caller goes step by step."""
    call = call_row(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms)
    try:
        statements, after = att.then_at_once()
        statements = [call_record_statement(call), *statements]
    except Exception as exc:  # noqa: BLE001 - nothing is written yet: the steps (and their then_failed) follow
        return _step_by_step(att, exc)
    # The owner's lock and the check that no erasure of theirs has started, in the same round trip: if one has,
    # nothing is written and the steps below write the row and the booking for the pseudonym (integrations.erasing).
    guard = guard_statements([call.owner_id])
    try:
        rows = at_once([*guard, *statements])[len(guard) :]
    except DatabaseError as exc:
        return _step_by_step(att, exc)
    att.row = call_recorded_as(call, rows[0])
    call_recorded(att, call, checks=True)
    after(rows[1:])
    return True


def _step_by_step(att, exc):
    logger.warning(
        "%s %s: booking in one round trip failed, writing it step by step: %r", att.provider, att.operation, exc
    )
    return False
