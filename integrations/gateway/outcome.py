"""What a refused or failed attempt means, decided once for the sync and async paths: the row
while the circuit is open, and a Failure's classification, 429 pause, row, alert and breaker verdict.
"""

import asyncio
import time

from .. import breaker
from ..alerts import alert_raise
from ..errors import (
    CircuitOpen,
    QuotaExceeded,
)
from ..models import Alert, ProviderCall
from ..redaction import redact
from .calllog import _write, classify


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
        # The caller went away (Django cancels a request's task when its client disconnects; a server shutting
        # down cancels what runs): the provider did nothing wrong. Recorded as such, the breaker not told.
        self.cancelled = isinstance(exc, (asyncio.CancelledError, GeneratorExit))
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
        if self.cancelled:
            _write(att, outcome=ProviderCall.Outcome.CANCELLED, latency_ms=self.latency_ms, error=error)
            return
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
