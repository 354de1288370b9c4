"""The one path for every outbound provider call.

    with gateway.attempt("stripe", "payment_intent.create", owner=user, idempotency_key=key) as call:
        intent = client.payment_intents.create(...)   # the adapter's SDK call
        call.record(http_status=200, request_id=intent.last_response.request_id, units={"requests": 1})

or, for a one-liner, `gateway.call(provider, operation, fn, meter=...)`.

Each attempt: the provider must be configured (else ProviderNotConfigured);
the outbound limiter must give a token (else RateLimited, nothing sent); the
circuit must allow it (else CircuitOpen, recorded); then the block runs, timed,
and exactly one ProviderCall row is written with its outcome, units, cost and
a redacted error. Errors leave as the hub's own types (integrations.errors):
adapters translate vendor exceptions; network errors and timeouts the adapter
did not translate are classified here. Anything else is re-raised untouched
after being recorded, and is treated as permanent.

The gateway never retries or sleeps: Celery tasks built on
`integrations.tasks.ProviderTask` are the one retry loop, and web requests
get a 502/503 with Retry-After instead.

Call providers outside `transaction.atomic()` blocks: a rollback would take the
call's log row with it, though the provider was called.
"""

import asyncio
import contextlib
import contextvars
import logging
import time
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import breaker, limiter, metrics
from .aio import commit_without_flush_wait, db_hop
from .alerts import alert_raise
from .context import after_response, get_request_id
from .errors import (
    CircuitOpen,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)
from .models import Alert, ProviderCall
from .redaction import redact
from .registry import require
from .usage import budget_check, call_record, failure_rate_check

logger = logging.getLogger(__name__)

# Set by ProviderTask while a task runs: attempt number, and the (provider,
# scope) rate tokens booked by an earlier deferral of this task.
_task_context = contextvars.ContextVar("gateway_task_context", default=None)


class TaskContext:
    def __init__(self, attempt=1, prepaid=()):
        self.attempt = attempt
        self.prepaid = set(prepaid)
        self.reserved = set()


@contextlib.contextmanager
def task_context(attempt=1, prepaid=()):
    ctx = TaskContext(attempt, prepaid)
    token = _task_context.set(ctx)
    try:
        yield ctx
    finally:
        _task_context.reset(token)


def in_task():
    return _task_context.get() is not None


def timeout_for(provider):
    """Seconds for an SDK timeout: short inside a web request, longer in a worker."""
    conf = settings.PROVIDER_TIMEOUTS.get(provider, settings.PROVIDER_TIMEOUTS["default"])
    return conf["task"] if in_task() else conf["web"]


def price_estimate(provider, operation, units):
    """What the price table (PROVIDER_PRICES) says a call with these units costs, in USD.

    The cost of every ProviderCall that reports no cost of its own, and the
    estimate a domain app shows until the provider bills (Twilio prices later).
    """
    table = settings.PROVIDER_PRICES.get(provider, {})
    entry = table.get(operation) or table.get("*")
    if not entry:
        return Decimal(0)
    cost = Decimal(str(entry.get("per_call", 0)))
    for unit, price in entry.get("per_unit", {}).items():
        if unit in (units or {}):
            cost += Decimal(str(units[unit] or 0)) * Decimal(str(price))
    return cost


_TIMEOUT_NAMES = ("Timeout", "TimeoutError", "ReadTimeout", "ConnectTimeout", "TimeoutException")
_CONNECTION_NAMES = ("ConnectionError", "ConnectError", "TransportError", "RemoteDisconnected", "NetworkError")


def classify(provider, exc):
    """A ProviderError for `exc`, or None if it is not a provider failure we recognise."""
    if isinstance(exc, ProviderError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, TimeoutError) or names.intersection(_TIMEOUT_NAMES):
        return ProviderTimeout(provider, redact(str(exc)) or "timed out")
    if isinstance(exc, ConnectionError) or names.intersection(_CONNECTION_NAMES):
        return ProviderUnavailable(provider, redact(str(exc)) or "connection failed")
    return None


class Attempt:
    """What the caller learns during one attempt and hands to the call log."""

    def __init__(self, provider, operation, *, owner, scope, idempotency_key, related, attempt_no):
        self.provider = provider
        self.operation = operation
        self.owner_id = _owner_id(owner)
        self.scope = scope or ""
        self.idempotency_key = idempotency_key or ""
        self.related_type, self.related_id = _related(related) or ("", "")
        self.attempt_no = attempt_no
        self.http_status = None
        self.request_id = ""
        self.units = {}
        self.cost_usd = None
        self.row = None
        # Async callers only: a booking to run with the call's row on success (aattempt).
        self.then = None
        self.then_result = None

    def record(self, *, http_status=None, request_id=None, units=None, cost_usd=None):
        if http_status is not None:
            self.http_status = http_status
        if request_id:
            self.request_id = str(request_id)[:128]
        if units:
            self.units.update(units)
        if cost_usd is not None:
            self.cost_usd = Decimal(str(cost_usd))


def _owner_id(owner):
    if owner is None:
        return None
    return getattr(owner, "pk", owner)


def _related(related):
    if related is None:
        return None
    if isinstance(related, tuple):
        return related
    return (related._meta.label_lower, str(related.pk))


def _write(att, *, outcome, latency_ms, error=None, retryable=None, request_id=None):
    request_id = request_id if request_id is not None else get_request_id()
    ok = outcome == ProviderCall.Outcome.OK
    if att.cost_usd is not None:
        cost = att.cost_usd
    else:
        cost = price_estimate(att.provider, att.operation, att.units) if ok else Decimal(0)
    now = timezone.now()
    att.row = call_record(
        ProviderCall(
            provider=att.provider,
            operation=att.operation[:64],
            owner_id=att.owner_id,
            outcome=outcome,
            http_status=att.http_status or getattr(error, "http_status", None),
            latency_ms=round(latency_ms, 3),
            attempt=att.attempt_no,
            scope=att.scope[:128],
            provider_request_id=att.request_id or (getattr(error, "request_id", None) or "")[:128],
            idempotency_key=att.idempotency_key[:255],
            units=att.units,
            cost_usd=cost,
            error_code=(getattr(error, "code", None) or (type(error).__name__ if error else ""))[:64],
            error_message=redact(getattr(error, "message", None) or (str(error) if error else "")),
            retryable=retryable,
            related_type=att.related_type[:64],
            related_id=att.related_id[:64],
            request_id=(request_id or "")[:128],
            created_at=now,
        )
    )
    metrics.provider_calls.labels(att.provider, att.operation, outcome).inc()
    metrics.provider_latency.labels(att.provider).observe(latency_ms / 1000.0)
    if cost:
        metrics.provider_cost.labels(att.provider).inc(float(cost))
        budget_check(provider=att.provider, owner_id=att.owner_id, now=now)
    if not ok and outcome != ProviderCall.Outcome.CIRCUIT_OPEN:
        failure_rate_check(provider=att.provider, now=now)


def _take_token(provider, scope, rate_cost):
    ctx = _task_context.get()
    if ctx is not None and (provider, scope or "") in ctx.prepaid:
        ctx.prepaid.discard((provider, scope or ""))  # the token booked by the last deferral
        return
    decision = limiter.take(provider, scope, cost=rate_cost, reserve=ctx is not None)
    if decision.granted:
        return
    if decision.reserved:
        ctx.reserved.add((provider, scope or ""))
    metrics.provider_calls.labels(provider, "-", "deferred").inc()
    raise RateLimited(provider, scope, decision.wait, reserved=decision.reserved)


def _refused(att, permit):
    """The CircuitOpen for an attempt the breaker refused, recorded as one row."""
    error = CircuitOpen(att.provider, "circuit open", retry_after=permit.wait)
    _write(att, outcome=ProviderCall.Outcome.CIRCUIT_OPEN, latency_ms=0.0, error=error, retryable=True)
    return error


def _breaker_waits_on_news(permit):
    """Whether the breaker needs to hear that the provider answered (it is probing, or counting failures)."""
    return permit.state != breaker.CLOSED or permit.failures


class Failure:
    """What a failed attempt means, decided once for `attempt` and `aattempt` (which differ only in how they wait).

    `error` is what leaves the block (the exception itself when it is already
    ours or not a provider failure we understand); `pause` the seconds a 429's
    Retry-After blocks the (provider, scope) bucket, or 0; `healthy` what the
    breaker is told (None: nothing); `log()` writes the call's row and alerts.
    """

    def __init__(self, att, exc, permit, started):
        self.att = att
        self.latency_ms = (time.perf_counter() - started) * 1000
        error = classify(att.provider, exc) if isinstance(exc, Exception) else None
        self.known = error is not None
        self.error = error if self.known else exc
        self.pause = error.retry_after if self.known and error.retry_after and error.http_status == 429 else 0
        if not self.known:
            # Not a provider failure we understand (a bug, or an untranslated
            # vendor error): record it, leave the circuit alone, re-raise as is.
            self.healthy = None
        elif error.outcome == ProviderCall.Outcome.RATE_LIMITED:
            self.healthy = None  # a busy provider is not a broken one
        elif error.retryable:
            self.healthy = False
        elif _breaker_waits_on_news(permit):
            self.healthy = True  # it answered (a 4xx): it is up
        else:
            self.healthy = None

    def log(self):
        att, error = self.att, self.error
        if not self.known:
            _write(att, outcome=ProviderCall.Outcome.ERROR, latency_ms=self.latency_ms, error=error, retryable=False)
            return
        _write(att, outcome=error.outcome, latency_ms=self.latency_ms, error=error, retryable=error.retryable)
        if isinstance(error, QuotaExceeded):
            # Every call to this provider fails until someone tops up the account: tell staff once.
            alert_raise(
                kind=Alert.Kind.QUOTA,
                provider=att.provider,
                severity=Alert.Severity.CRITICAL,
                message=f"{att.provider} refuses calls for quota or billing ({error.code or error.http_status}): {redact(error.message)}",
            )


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
):
    """Run one attempt at a provider call; see the module docstring.

    `log_after_response`: inside a web request, a successful call's row (and the
    roll-ups and budget check that go with it) is written once the answer has
    been sent, not while the client waits (a flight search: the client is
    waiting on the provider already). Failures are always written at once, and
    outside a request the row is written before the block returns. The row is
    not readable through `att.row` until then."""
    require(provider)

    _take_token(provider, scope, rate_cost)

    ctx = _task_context.get()
    att = Attempt(
        provider,
        operation,
        owner=owner,
        scope=scope,
        idempotency_key=idempotency_key,
        related=related,
        attempt_no=attempt_no or (ctx.attempt if ctx else 1),
    )

    permit = breaker.before_call(provider)
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
            breaker.after_call(provider, healthy=failure.healthy)
        if failure.error is exc:
            raise
        raise failure.error from exc
    latency_ms = (time.perf_counter() - started) * 1000
    if log_after_response:
        request_id = get_request_id() or ""
        after_response(
            lambda: _write(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms, request_id=request_id)
        )
    else:
        _write(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms)
    if _breaker_waits_on_news(permit):
        breaker.after_call(provider, healthy=True)


def call(provider, operation, fn, *, meter=None, **options):
    """`fn()` as one attempt; `meter(result)` may return record() keyword arguments."""
    with attempt(provider, operation, **options) as att:
        result = fn()
        if meter is not None:
            att.record(**meter(result))
    return result


# --- the same attempt from async code (the AI request path) ----------------------------
#
# Same rules, same ProviderCall row, same breaker and limiter state; what differs
# is only how it waits. Redis is asked through the asyncio client, the call-log
# write (and the alerts it may raise) runs in a thread, and a missing rate token
# is awaited when it comes before the caller's deadline: a web request is not a
# Celery task that could come back later, and an await holds no worker.


async def atake_token(provider, scope=None, *, bucket="requests", cost=1, deadline=None):
    """A token now, or after an await that ends before `deadline` (a time.monotonic() value); else RateLimited."""
    left = None if deadline is None else deadline - time.monotonic()
    max_wait = min(settings.RATE_LIMIT_MAX_RESERVE_SECONDS, left) if left is not None else 0.0
    decision = await limiter.atake(provider, scope, bucket=bucket, cost=cost, reserve=max_wait > 0, max_wait=max_wait)
    if decision.granted:
        return
    if decision.reserved:
        # The bucket booked a future token for this call (so waiters queue in
        # order instead of polling); the wait fits inside the deadline.
        await asyncio.sleep(decision.wait)
        return
    metrics.provider_calls.labels(provider, "-", "deferred").inc()
    raise RateLimited(provider, scope, decision.wait)


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
):
    """`attempt` for async callers; a rate token is awaited up to `deadline` (time.monotonic())."""
    require(provider)

    await atake_token(provider, scope, cost=rate_cost, deadline=deadline)

    att = Attempt(
        provider,
        operation,
        owner=owner,
        scope=scope,
        idempotency_key=idempotency_key,
        related=related,
        attempt_no=attempt_no,
    )

    permit = await breaker.abefore_call(provider)
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
            await breaker.aafter_call(provider, healthy=failure.healthy)
        if failure.error is exc:
            raise
        raise failure.error from exc
    latency_ms = (time.perf_counter() - started) * 1000
    await db_hop(_write_ok_then, att, latency_ms=latency_ms)
    if _breaker_waits_on_news(permit):
        await breaker.aafter_call(provider, healthy=True)


def _write_ok_then(att, *, latency_ms):
    """The call's row and, in the same thread hop and commit, the caller's own booking (`att.then`).

    The booking runs in a savepoint: if it fails, the call's row is still kept
    (the provider was called), and the error goes on to the caller. A client
    waits on this path (the async endpoints), so the commit does not wait for
    the disk flush (aio.commit_without_flush_wait)."""
    with transaction.atomic():
        commit_without_flush_wait()
        _write(att, outcome=ProviderCall.Outcome.OK, latency_ms=latency_ms)
        if att.then is None:
            return
        try:
            with transaction.atomic():
                att.then_result = att.then()
        except Exception as exc:  # noqa: BLE001 - re-raised once the call's row is committed
            failure = exc
        else:
            return
    raise failure
