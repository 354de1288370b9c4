"""The adapter contract: how a vendor module talks to its SDK.

One module per vendor (`payments/providers/stripe.py`, `documents/providers.py`,
`messaging/providers/twilio_rest.py`, `integrations/email.py`) is the only place
that imports the vendor's SDK. It holds one `ProviderAdapter` and small
functions, one per operation, each of which is one gateway attempt:

    STRIPE = StripeAdapter()          # provider = "stripe"; sdk_errors = (stripe.StripeError,)

    def refund_create(*, payment_intent, amount, idempotency_key, owner=None, related=None):
        with STRIPE.attempt("refund.create", owner=owner, related=related, idempotency_key=idempotency_key) as call:
            refund = client().v1.refunds.create({...}, {"idempotency_key": idempotency_key})
            call.record(http_status=200, request_id=..., units={"requests": 1})
        return ...                    # our own value (a dataclass, a dict we own), never an SDK object

- `attempt()` runs the block inside `integrations.gateway.attempt` (configured
  check, outbound limiter, circuit breaker, one ProviderCall row) and
  translates the SDK's own exceptions once, in `translate()`, into the hub's
  errors (`integrations.errors`: retryable or permanent, with Retry-After and
  the provider's request id). Network errors and timeouts it leaves untranslated
  are classified by the gateway. `aattempt()` is the same over
  `gateway.aattempt` for async callers (`async with AI.aattempt(...) as call`).
- Costs: an operation whose price is known only from the answer takes
  `cost=`, a callable `cost(result) -> (units, cost_usd)`; `cost_usd=None`
  lets the price table (`PROVIDER_PRICES`, `gateway.price_estimate`) price the
  units. `record_cost(call, cost, result)` books it on the attempt.
- Clients are cached per thread or process, keyed by `credentials_key(...)`: a
  hash of the credentials and options, so a rotated secret makes a new client
  and no raw secret sits in a cache key.
- The SDK's own retries are off: the gateway and `ProviderTask` are the one
  retry loop.
"""

import contextlib
import hashlib

import httpx
from django.conf import settings

from . import gateway
from .errors import ProviderTimeout, ProviderUnavailable


def credentials_key(*values):
    """A cache key for a client built from these credentials and options (a SHA-256, never the secret itself)."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(repr(value).encode())
        digest.update(b"\0")
    return digest.hexdigest()


class ClientCache:
    """Clients keyed by credentials_key; a few at most (settings change in tests and on rotation)."""

    def __init__(self, size=4):
        self.size = size
        self._clients = {}

    def get(self, key, build):
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= self.size:
                self._clients.clear()
            client = self._clients[key] = build()
        return client

    def clear(self):
        self._clients.clear()


def record_cost(call, cost, result):
    """Book `cost(result) -> (units, cost_usd)` on the attempt (cost_usd None: the price table prices the units)."""
    if cost is None:
        return
    units, cost_usd = cost(result)
    call.record(units=units or None, cost_usd=cost_usd)


class ProviderAdapter:
    """One vendor's call wrapper: `provider` (a registry name), the SDK's exception classes, and `translate`."""

    provider = ""
    sdk_errors = ()

    def translate(self, exc):
        """The hub's error (integrations.errors) for an SDK exception, or None to let the gateway classify it."""
        raise NotImplementedError

    @contextlib.contextmanager
    def attempt(self, operation, **options):
        """One gateway attempt whose SDK exceptions leave as the hub's own errors."""
        with gateway.attempt(self.provider, operation, **options) as call:
            try:
                yield call
            except self.sdk_errors as exc:
                error = self.translate(exc)
                if error is None:
                    raise
                raise error from exc

    @contextlib.asynccontextmanager
    async def aattempt(self, operation, **options):
        """`attempt` for async callers (the AI path): `gateway.aattempt`, its options (deadline ...) passed on."""
        async with gateway.aattempt(self.provider, operation, **options) as call:
            try:
                yield call
            except self.sdk_errors as exc:
                error = self.translate(exc)
                if error is None:
                    raise
                raise error from exc


class HttpxAdapter(ProviderAdapter):
    """An adapter for a REST API called over httpx (Zoom, Webex, Microsoft Graph): its transport failures translated once."""

    sdk_errors = (httpx.TimeoutException, httpx.TransportError)
    vendor = ""  # how messages name the service: "Zoom", "Microsoft Graph"

    def translate(self, exc):
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(self.provider, f"{self.vendor} did not answer in time")
        return ProviderUnavailable(self.provider, f"connection to {self.vendor} failed ({type(exc).__name__})")

    def answered(self, att, response, *, error, request_id=None, stream=False):
        """Book one HTTP answer on the attempt (one request); a 4xx/5xx leaves as `error(response)`, after a
        streamed answer's body has been read (the error is in it) and the connection given back."""
        att.record(http_status=response.status_code, request_id=request_id, units={"requests": 1})
        if response.status_code >= 400:
            if stream:
                response.read()
                response.close()
            raise error(response)
        return response


def graph_base():
    """Microsoft Graph's API root (GRAPH_API_BASE points tests and national clouds elsewhere)."""
    return (settings.GRAPH_API_BASE or "https://graph.microsoft.com/v1.0").rstrip("/")
