"""AI completions: routing with fallback, caching, streaming, costs and budgets.

    await completion_create(user=..., params=...)   -> the response dict
    await completion_stream(user=..., params=...)   -> an async iterator of SSE bytes

Async end to end: these run on the event loop of an ASGI worker, where one
blocking call would stall every other open stream. Provider calls use the
SDKs' async clients, the limiter, breaker and answer cache the asyncio Redis
client, and each group of database writes one hop to a thread
(`sync_to_async`), never the loop. Nothing here sleeps: a rate token or a
provider's Retry-After is awaited only when the wait ends before the request's
deadline; otherwise the walk moves on to the next provider, or the client gets
503 with Retry-After.

`params` is the validated request (serializers.CompletionRequestSerializer).
Both walk the route's chain of (provider, model): unconfigured providers are
skipped; retryable failures (429, 5xx, timeouts, open circuit, our own
limiter) fall through to the next entry; quota and auth failures (the
provider's account, not the request) fall through too and that provider is
not tried again; a prompt longer than a model's context window falls through
to the next model (whose window may be larger), and is the client's 400
`context_length_exceeded` when every model asked refused it; any other
permanent failure (a bad request) ends the walk, since another provider would
refuse it the same way. When every entry failed,
those that named a short Retry-After are tried once more after it, if the
deadline allows. Every attempt is one gateway attempt (one ProviderCall).

The package, by concern: chain.py (the walk with fallback and deadlines),
cache.py (the answer cache), booking.py (the database work of a request),
completions.py and streaming.py (the two ways to answer).
"""

from .booking import Booking, begin
from .cache import cache_key, use_cache
from .chain import ChainExhausted, ChainRefused, walk
from .completions import completion_create
from .streaming import completion_stream, replay, sse

__all__ = [
    "Booking",
    "begin",
    "ChainExhausted",
    "ChainRefused",
    "cache_key",
    "completion_create",
    "completion_stream",
    "replay",
    "sse",
    "use_cache",
    "walk",
]
