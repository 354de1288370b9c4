"""One ProviderCall row per attempt: the Attempt a caller records into, the failure classification
of exceptions the adapter did not translate, the price table, and the write with its metrics and
budget checks (failure rates are the threshold evaluation's, integrations.alerting.thresholds).
"""

from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from .. import metrics
from ..context import get_request_id
from ..errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..models import ProviderCall
from ..redaction import redact
from ..usage import budget_check, call_record
from . import handoff


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

    def __init__(self, provider, operation, owner, scope, idempotency_key, related, attempt_no):
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
        # Async callers only: a booking to run with the call's row on success (aattempt),
        # what to undo if it fails, and whether the caller answers before both are written.
        self.then = None
        self.then_failed = None
        # Optional: `then` as statements for the row's one round trip: () -> ([(sql, params)], after(rows)).
        self.then_at_once = None
        self.book_later = False

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


def _write(att, *, outcome, latency_ms, error=None, retryable=None, request_id=None, hand_off=False):
    """Write the attempt's row (`att.row`), or with `hand_off` in a Celery worker hand it to the worker's
    drainer (gateway.handoff: durable in Redis now, in PostgreSQL a moment later, budget checks then)."""
    call = call_row(
        att, outcome=outcome, latency_ms=latency_ms, error=error, retryable=retryable, request_id=request_id
    )
    if hand_off and handoff.hand_off(call):
        call_recorded(att, call, checks=False)
        return
    att.row = call_record(call)
    call_recorded(att, call, checks=True)


def call_row(att, *, outcome, latency_ms, error=None, retryable=None, request_id=None):
    """The ProviderCall row of one attempt (not saved), priced."""
    request_id = request_id if request_id is not None else get_request_id()
    ok = outcome == ProviderCall.Outcome.OK
    if att.cost_usd is not None:
        cost = att.cost_usd
    else:
        cost = price_estimate(att.provider, att.operation, att.units) if ok else Decimal(0)
    return ProviderCall(
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
        created_at=timezone.now(),
    )


def call_recorded(att, call, *, checks):
    """Metrics for a recorded call, and (`checks`) its budget alerts (failure rates are the evaluation's: thresholds)."""
    metrics.provider_calls.labels(att.provider, att.operation, call.outcome).inc()
    metrics.provider_latency.labels(att.provider).observe(call.latency_ms / 1000.0)
    if call.cost_usd:
        metrics.provider_cost.labels(att.provider).inc(float(call.cost_usd))
        if checks:
            budget_check(provider=att.provider, owner_id=att.owner_id, now=call.created_at)
