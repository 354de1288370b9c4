"""`attempt` and `call` for synchronous callers (tasks, views, admin): a missing rate token is
RateLimited at once, never slept on (the task defers itself).
"""

import contextlib
import time

from .. import breaker, limiter, metrics
from ..context import after_response, answering, get_request_id
from ..errors import (
    RateLimited,
)
from ..models import ProviderCall
from ..registry import require
from . import batchlog
from .calllog import Attempt, _write
from .outcome import Failure, _breaker_waits_on_news, _refused
from .runtime import _task_context


def _take_token(provider, scope, rate_cost, circuit):
    """The granted Decision (with the breaker's state read in the same round trip), or None for a prepaid token."""
    ctx = _task_context.get()
    if ctx is not None and (provider, scope or "") in ctx.prepaid:
        # The token booked by the last deferral: the limiter is not asked again, but a provider's 429 since
        # then (Retry-After) blocks this scope for booked calls too; the booking is kept for the next run.
        blocked = limiter.blocked_for(provider, scope)
        if blocked > 0:
            ctx.reserved.add((provider, scope or ""))
            metrics.provider_calls.labels(provider, "-", "deferred").inc()
            raise RateLimited(provider, scope, blocked, reserved=True)
        ctx.prepaid.discard((provider, scope or ""))
        return None
    decision = limiter.take(
        provider, scope, cost=rate_cost, reserve=ctx is not None, breaker_key=breaker.state_key(circuit)
    )
    if decision.granted:
        return decision
    if decision.reserved:
        ctx.reserved.add((provider, scope or ""))
    metrics.provider_calls.labels(provider, "-", "deferred").inc()
    raise RateLimited(provider, scope, decision.wait, reserved=decision.reserved)


@contextlib.contextmanager
def attempt(
    provider,
    operation,
    *,
    owner=None,
    scope=None,
    idempotency_key=None,
    related=None,
    rate_cost=1,
    attempt_no=None,
    log_after_response=False,
    circuit=None,
):
    """Run one attempt at a provider call; see the module docstring.

    `log_after_response`: inside a web request, a successful call's row (and the
    roll-ups and budget check that go with it) is written once the answer has
    been sent, not while the client waits (a flight search: the client is
    waiting on the provider already); in a web worker under the ASGI server by
    the process's call-log writer, with other requests' rows (batchlog).
    Failures are always written at once, and outside a request the row is
    written before the block returns, except in a Celery worker process,
    where a successful call's row is handed off through Redis and written
    with others' a moment later (gateway.handoff). The row is not readable
    through `att.row` until then (never for a handed-off one).

    `circuit`: the breaker this attempt counts on, the provider's by default. A provider whose destinations
    fail apart (alert channels: each its own receiver) names one per destination, `<provider>:<destination>`,
    so one that is down does not fail fast the calls to the others."""
    require(provider)
    circuit = circuit or provider

    decision = _take_token(provider, scope, rate_cost, circuit)

    ctx = _task_context.get()
    attempt_no = attempt_no or (ctx.attempt if ctx else 1)
    att = Attempt(provider, operation, owner, scope, idempotency_key, related, attempt_no)

    permit = breaker.closed_permit(decision and decision.breaker) or breaker.before_call(circuit)
    if not permit.allowed:
        raise _refused(att, permit)

    started = time.perf_counter()
    try:
        yield att
    except BaseException as exc:
        failure = Failure(att, exc, permit, started)
        if failure.pause:
            limiter.block(provider, scope, failure.pause)
        failure.log()
        if failure.healthy is not None:
            breaker.after_call(circuit, healthy=failure.healthy)
        if failure.error is exc:
            raise
        raise failure.error from exc
    latency_ms = (time.perf_counter() - started) * 1000
    if log_after_response:
        request_id = get_request_id() or ""
        batch = batchlog.writer()
        if batch is not None and answering():  # a web worker under the ASGI server: with others' in a moment
            batch.put(att, latency_ms, request_id)
        else:
            after_response(
                lambda: _write(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms, request_id=request_id)
            )
    else:  # in a Celery worker, handed to its drainer (gateway.handoff); elsewhere written now
        _write(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms, hand_off=True)
    if _breaker_waits_on_news(permit):
        breaker.after_call(circuit, healthy=True)


def call(provider, operation, fn, *, meter=None, **options):
    """`fn()` as one attempt; `meter(result)` may return record() keyword arguments."""
    with attempt(provider, operation, **options) as att:
        result = fn()
        if meter is not None:
            att.record(**meter(result))
    return result
