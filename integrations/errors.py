"""The hub's own error types for provider work.

Every adapter translates its vendor's exceptions into these (usually through
`error_from_http`), so retry logic never guesses: `retryable` errors may be
tried again, no sooner than `retry_after` seconds; everything else is
permanent and is not retried anywhere.
"""

import email.utils
import json
import math
import time


def _unpickled(cls, args, fields):
    """An error rebuilt without its __init__, whose arguments are not its `args`; then every field put back."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(fields)
    return exc


class DomainError(Exception):
    """What a service raises when the caller must be told no: one HTTP status, a stable code, a sentence.

    Services, tasks and admin actions raise it; the API's one exception handler
    (`integrations.api.errors.exception_handler`) turns it into
    `{"error": code, "detail": detail, **extra}` with `headers` set. Services
    never import DRF.

    >>> raise DomainError(409, "invoice_not_payable", "This invoice is already paid.")
    """

    # Positional-only, so `extra` may carry a field named status, code or detail
    # (InvoiceNotPayable reports the invoice's `status`).
    def __init__(self, status, code, detail, /, *, headers=None, **extra):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def as_dict(self):
        return {"error": self.code, "detail": self.detail, **self.extra}

    def __reduce__(self):
        # Pickle rebuilds an exception as cls(*self.args), here cls(detail), which __init__ cannot take: Celery
        # would hand on a bare Exception instead (see ProviderError.__reduce__).
        return _unpickled, (type(self), self.args, self.__dict__)


class ProviderError(Exception):
    retryable = False
    outcome = "error"
    api_status = 502
    api_code = "provider_error"

    def __init__(self, provider, message="", *, code=None, http_status=None, retry_after=None, request_id=None):
        super().__init__(message or self.__class__.__name__)
        self.provider = provider
        self.message = message or self.__class__.__name__
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after
        self.request_id = request_id

    def __reduce__(self):
        # Celery pickles a task's exception to pass it from the pool's process to the worker, and swaps one
        # that does not survive pickle.loads(pickle.dumps(exc)) for a base class that does. The default
        # rebuilds cls(*self.args) = cls(message), which subclasses with their own __init__
        # (ProviderNotConfigured, RateLimited) cannot take: a ProviderNotConfigured arrived as a bare
        # PermanentError without `missing`. Rebuilt without __init__, every subclass keeps its type and fields.
        return _unpickled, (type(self), self.args, self.__dict__)

    def as_api_error(self):
        headers, extra = {}, {"provider": self.provider}
        retry_after = self.retry_after
        if self.retryable and not retry_after:
            # A transient failure with no hint from the provider still tells the client when
            # to come back, so a well-behaved client does not retry in a tight loop.
            from django.conf import settings

            retry_after = settings.PROVIDER_RETRY_AFTER_DEFAULT_SECONDS
        if retry_after:
            seconds = int(retry_after + 0.999)
            headers["Retry-After"] = str(seconds)
            extra["retry_after"] = seconds
        if self.code:
            extra["provider_code"] = self.code
        return DomainError(self.api_status, self.api_code, self.detail_sentence(), headers=headers, **extra)

    def detail_sentence(self):
        return f"{self.provider}: {self.message}"


class RetryableError(ProviderError):
    """Network trouble, timeouts, 429 and 5xx: worth another attempt later."""

    retryable = True


class PermanentError(ProviderError):
    """Validation, auth, not found, card declined, quota exhausted: retrying cannot help."""

    api_code = "provider_rejected"


class ProviderUnavailable(RetryableError):
    api_code = "provider_unavailable"

    def detail_sentence(self):
        return f"{self.provider} is unavailable right now ({self.message}); try again later."


class ProviderTimeout(RetryableError):
    outcome = "timeout"
    api_status = 504
    api_code = "provider_timeout"

    def detail_sentence(self):
        return f"{self.provider} did not answer in time; try again later."


class ProviderRateLimited(RetryableError):
    """The provider answered 429 (not a quota problem): its Retry-After is a floor."""

    outcome = "rate_limited"
    api_status = 503
    api_code = "provider_rate_limited"

    def detail_sentence(self):
        return f"{self.provider} is rate limiting the hub; retry after the time given."


class QuotaExceeded(PermanentError):
    """A 429 that means 'out of credit or quota' (OpenAI insufficient_quota): never retried here."""

    api_status = 503
    api_code = "provider_quota_exceeded"


class ContextTooLong(PermanentError):
    """The provider refused the prompt as longer than its model's context window: the request's size, not a
    fault of the provider; another model, with a larger window, may take it."""

    api_status = 400
    api_code = "context_length_exceeded"


class RateLimited(RetryableError):
    """Our own outbound limiter has no token for this scope yet; nothing was sent."""

    outcome = "rate_limited"
    api_status = 503
    api_code = "rate_limited_outbound"

    def __init__(self, provider, scope, wait, *, reserved=False):
        super().__init__(provider, f"outbound limit for {scope or 'default'} scope", retry_after=wait)
        self.scope = scope
        self.reserved = reserved

    def detail_sentence(self):
        return f"The hub is pacing calls to {self.provider}; retry in {self.retry_after:.1f} s."


class CircuitOpen(RetryableError):
    """The provider failed repeatedly; calls fail fast until the cooldown lets a probe through."""

    outcome = "circuit_open"
    api_status = 503
    api_code = "circuit_open"

    def detail_sentence(self):
        return f"{self.provider} is failing; the hub stopped calling it for a while. Retry after the time given."


class CardDeclined(PermanentError):
    """The payment provider declined the customer's card (Stripe's `card_error`, HTTP 402).

    Not a provider failure (502, retry later) but an answer for the customer: 402 `card_declined` with the
    decline code and the provider's sentence, which Stripe writes to be shown to the customer. `code` keeps
    the exact reason for the hub's rows and staff; `shown_code` / `shown_message` are what the customer may
    see (Stripe asks that a few reasons, a card reported stolen, be presented as a generic decline).
    `provider_code` is the provider's error code (Stripe's `code`: card_declined, expired_card, ...), carried as
    `provider_code` like every other provider error answer, beside the decline code."""

    api_status = 402
    api_code = "card_declined"

    def __init__(self, provider, message="", *, shown_code="", shown_message="", provider_code="", **kwargs):
        super().__init__(provider, message, **kwargs)
        self.shown_code = shown_code or "generic_decline"
        self.shown_message = shown_message or "Your card was declined."
        self.provider_code = provider_code or "card_declined"

    def as_api_error(self):
        detail = f"{self.shown_message} Nothing was charged; try another card, or ask the card's issuer."
        return DomainError(
            self.api_status,
            self.api_code,
            detail,
            provider=self.provider,
            provider_code=self.provider_code,
            decline_code=self.shown_code,
        )


class ProviderNotConfigured(PermanentError):
    api_status = 503
    api_code = "provider_not_configured"

    def __init__(self, provider, missing):
        super().__init__(provider, f"{provider} is not configured; set {', '.join(missing)}.")
        self.missing = list(missing)

    def as_api_error(self):
        return DomainError(503, self.api_code, self.message, provider=self.provider, missing=self.missing)


def parse_retry_after(value):
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf", "nan", "1e999": no usable hint (an infinite block would overflow, and never end).
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


QUOTA_CODES = frozenset(
    {"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded", "credit_balance_too_low"}
)


# 403s Google's APIs (Gmail, Calendar, Meet, Drive) use for per-user rate limits: a 429 to the hub.
GOOGLE_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def google_reason(content):
    """(reason, message) from a Google API error body ({"error": {"errors": [{"reason"}], "status", "message"}})."""
    try:
        error = json.loads(content).get("error", {})
    except (ValueError, AttributeError, TypeError):
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    errors = error.get("errors") or [{}]
    return errors[0].get("reason", "") or error.get("status", ""), error.get("message", "")


def error_from_http(provider, status, *, headers=None, code=None, message="", request_id=None):
    """Build the right error for an HTTP failure, the one classification every adapter shares.

    Retryable: 408, 409 lock timeouts are left to the adapter; 429 and 5xx. Quota
    429s are permanent. Stripe's `Stripe-Should-Retry` overrides the status.
    """
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    retry_after = parse_retry_after(headers.get("retry-after"))
    kwargs = dict(code=code, http_status=status, retry_after=retry_after, request_id=request_id)
    should_retry = headers.get("stripe-should-retry")
    if status == 429:
        if code in QUOTA_CODES:
            return QuotaExceeded(provider, message or "quota exhausted", **kwargs)
        return ProviderRateLimited(provider, message or "rate limited", **kwargs)
    if should_retry == "false":
        return PermanentError(provider, message or f"HTTP {status}", **kwargs)
    if should_retry == "true" or status == 408 or (status is not None and status >= 500):
        return ProviderUnavailable(provider, message or f"HTTP {status}", **kwargs)
    return PermanentError(provider, message or f"HTTP {status}", **kwargs)


def proves_nothing_sent(exc):
    """Whether an attempt's failure proves the provider made nothing: a clean refusal (DomainError, PermanentError)
    or one that never left the hub (a rate token, the provider's 429, an open breaker). Anything else (a timeout, a
    reset, a 5xx) leaves the outcome in doubt: the creates that must happen once (mail's MailSend, scheduling's
    MeetingCreate) look before they try again."""
    return isinstance(exc, (DomainError, PermanentError, RateLimited, ProviderRateLimited, CircuitOpen))
