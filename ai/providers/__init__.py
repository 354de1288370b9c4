"""The only package that imports the AI vendor SDKs.

OpenAI and Anthropic through their official SDKs; OpenRouter, xAI, Gemini
(its OpenAI-compatible endpoint) and GitHub Models through the `openai` SDK
pointed at their `base_url`. Each adapter renders the hub's canonical request
(ai.messages) in its vendor's format and parses the answer back into a
`Completion`. `ADAPTERS[provider]` (an `AIAdapter`, integrations.providers'
contract) is the one call wrapper: callers run `complete()` / `stream()` inside
its `aattempt()`, which translates the SDK's exceptions into integrations.errors
types once (`translate`).

The SDKs' own retries are off (max_retries=0): the gateway's fallback chain is
the one retry loop, and every attempt is one ProviderCall row.

Only the SDKs' async clients (`AsyncOpenAI`, `AsyncAnthropic`) are used: a
completion is served from the event loop of an ASGI worker, where a blocking
call would stall every other open stream.

The package by concern: the SDK clients and the two entry points here;
`adapters` (the call wrapper and `translate`), `openai_chat` (OpenAI and the
four OpenAI-compatible providers), `anthropic_messages`, `streams` (what both
stream classes share). Every name stays importable from `ai.providers`.
"""

import asyncio
import functools
import hashlib
import logging
import ssl
import weakref

import anthropic
import certifi
import openai
from django.conf import settings

from integrations import egress

from .adapters import (  # noqa: F401
    _CONNECTION,
    _SDK_ERRORS,
    _STATUS_ERRORS,
    _TIMEOUTS,
    ADAPTERS,
    AIAdapter,
    AnthropicAdapter,
    GeminiAdapter,
    GitHubModelsAdapter,
    OpenAIAdapter,
    OpenRouterAdapter,
    XAIAdapter,
    translate,
)
from .anthropic_messages import (  # noqa: F401
    _ANTHROPIC_FINISH,
    AnthropicStream,
    _anthropic_complete,
    _anthropic_messages,
    _anthropic_stream,
    _anthropic_usage,
    anthropic_params,
)
from .openai_chat import (  # noqa: F401
    OpenAIStream,
    _openai_complete,
    _openai_finish,
    _openai_messages,
    _openai_stream,
    _openai_usage,
    openai_params,
)
from .streams import _arguments, _Stream  # noqa: F401

logger = logging.getLogger(__name__)

# provider -> (API key setting, base URL setting)
CREDENTIALS = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "openrouter": ("OPENROUTER_API_KEY", "OPENROUTER_BASE_URL"),
    "xai": ("XAI_API_KEY", "XAI_BASE_URL"),
    "gemini": ("GEMINI_API_KEY", "GEMINI_BASE_URL"),
    "github_models": ("GITHUB_MODELS_TOKEN", "GITHUB_MODELS_BASE_URL"),
}
PROVIDERS = tuple(CREDENTIALS)
# Where the SDK sends a provider whose base URL setting is empty (what the egress proxy is decided for).
SDK_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}

# A callable returning the `httpx2.AsyncClient` the SDKs send through; None
# means the SDK's default client. Tests set it to one on an
# httpx2.MockTransport, so the real SDKs build requests and parse answers
# while nothing leaves the process.
http_client_factory = None

# An async client's connection pool belongs to the event loop it was opened on:
# clients are kept per loop (an ASGI worker has one loop for its whole life).
_clients = weakref.WeakKeyDictionary()


def _sdk_client(provider):
    """One SDK client per provider and event loop (its connection pool is reused across requests)."""
    key_name, base_name = CREDENTIALS[provider]
    api_key = getattr(settings, key_name)
    base_url = getattr(settings, base_name) or None
    # A digest, so the registry of clients never holds the key as such; a
    # rotated key or base URL gets a fresh client.
    fingerprint = (provider, hashlib.sha256(api_key.encode()).hexdigest(), base_url, http_client_factory)
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(fingerprint)
    if client is None:
        # No await between the lookup and the store: one loop, so no race.
        sdk = anthropic if provider == "anthropic" else openai
        if http_client_factory:
            http_client = http_client_factory()
        else:
            # The SDK's own defaults (timeouts, pool limits), with one shared TLS
            # context: building one loads the CA bundle, ~70 ms a client. One host
            # per client, so its proxy is the egress rule's for that host
            # (trust_env=False: httpx2 would read the environment by its own rule).
            proxy = egress.proxy_for(base_url or SDK_BASE_URLS["anthropic" if sdk is anthropic else "openai"])
            http_client = sdk.DefaultAsyncHttpxClient(verify=tls_context(), proxy=proxy, trust_env=False)
        cls = anthropic.AsyncAnthropic if provider == "anthropic" else openai.AsyncOpenAI
        client = per_loop[fingerprint] = cls(api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client)
    return client


def reset_clients():
    _clients.clear()


@functools.cache
def tls_context():
    """The TLS settings every provider client shares (certifi's CA bundle, as httpx would use)."""
    return ssl.create_default_context(cafile=certifi.where())


# --- entry points ----------------------------------------------------------------


async def complete(provider, model, req, *, timeout):
    """One completion from one provider; call it inside `ADAPTERS[provider].aattempt(...)`, which turns the SDK's
    exceptions into integrations.errors types."""
    if provider == "anthropic":
        return await _anthropic_complete(_sdk_client(provider), provider, model, req, timeout)
    return await _openai_complete(_sdk_client(provider), provider, model, req, timeout)


async def stream(provider, model, req, *, timeout):
    """Open a streamed completion: the HTTP status is known on return; `async for` the text deltas.

    Open and read it inside `ADAPTERS[provider].aattempt(...)` (the SDK's exceptions are translated there)."""
    if provider == "anthropic":
        return await _anthropic_stream(_sdk_client(provider), provider, model, req, timeout)
    return await _openai_stream(_sdk_client(provider), provider, model, req, timeout)
