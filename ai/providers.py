"""The only module that imports the AI vendor SDKs.

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
"""

import asyncio
import functools
import hashlib
import json
import logging
import ssl
import weakref

import anthropic
import certifi
import openai
from django.conf import settings

from integrations.errors import ProviderError, ProviderTimeout, ProviderUnavailable, QuotaExceeded, error_from_http
from integrations.providers import ProviderAdapter

from .messages import Completion, MessageError, parse_arguments

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
            # context: building one loads the CA bundle, ~70 ms a client.
            http_client = sdk.DefaultAsyncHttpxClient(verify=tls_context())
        cls = anthropic.AsyncAnthropic if provider == "anthropic" else openai.AsyncOpenAI
        client = per_loop[fingerprint] = cls(api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client)
    return client


def reset_clients():
    _clients.clear()


@functools.cache
def tls_context():
    """The TLS settings every provider client shares (certifi's CA bundle, as httpx would use)."""
    return ssl.create_default_context(cafile=certifi.where())


# --- errors ----------------------------------------------------------------

_STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError)
_TIMEOUTS = (openai.APITimeoutError, anthropic.APITimeoutError)
_CONNECTION = (openai.APIConnectionError, anthropic.APIConnectionError)
_SDK_ERRORS = (openai.OpenAIError, anthropic.AnthropicError)


def translate(provider, exc):
    """The hub's error for a vendor SDK exception."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, _TIMEOUTS):
        return ProviderTimeout(provider, "timed out")
    if isinstance(exc, _CONNECTION):
        return ProviderUnavailable(provider, f"connection failed ({exc.message})")
    if isinstance(exc, _STATUS_ERRORS):
        body = exc.body if isinstance(exc.body, dict) else {}
        if isinstance(exc, anthropic.APIStatusError):
            code = exc.error_code or exc.type
            message = exc.api_message or exc.message
        else:
            code = exc.code or body.get("type")
            message = body.get("message") or exc.message
        headers = dict(exc.response.headers)
        status = exc.status_code
        if code == "billing_error":  # Anthropic: out of credit, whatever the status
            return QuotaExceeded(provider, message, code=code, http_status=status, request_id=exc.request_id)
        if status < 400:
            # An error event inside a 200 stream (Anthropic's overloaded_error mid-stream).
            status = 529 if code in ("overloaded_error", "api_error") else 400
        return error_from_http(provider, status, headers=headers, code=code, message=message, request_id=exc.request_id)
    if isinstance(exc, _SDK_ERRORS):
        # The provider answered something the SDK could not read: treat it as a provider fault.
        return ProviderUnavailable(provider, f"unreadable response ({type(exc).__name__})")
    return None


class AIAdapter(ProviderAdapter):
    """One AI provider's call wrapper: `aattempt()` (gateway.aattempt) around the SDK call, and around reading
    the stream it opens, with the SDKs' exceptions translated once by `translate` above."""

    sdk_errors = _SDK_ERRORS

    def translate(self, exc):
        return translate(self.provider, exc)


class OpenAIAdapter(AIAdapter):
    provider = "openai"


class AnthropicAdapter(AIAdapter):
    provider = "anthropic"


class OpenRouterAdapter(AIAdapter):
    provider = "openrouter"


class XAIAdapter(AIAdapter):
    provider = "xai"


class GeminiAdapter(AIAdapter):
    provider = "gemini"


class GitHubModelsAdapter(AIAdapter):
    provider = "github_models"


# One instance per provider: `ADAPTERS[provider].aattempt("completion", ...)`.
ADAPTERS = {
    cls.provider: cls()
    for cls in (OpenAIAdapter, AnthropicAdapter, OpenRouterAdapter, XAIAdapter, GeminiAdapter, GitHubModelsAdapter)
}


def _arguments(raw):
    try:
        return parse_arguments(raw)
    except MessageError:
        # A model can emit broken JSON; hand it back as is rather than fail the whole answer.
        return {"_unparsed": raw}


# --- OpenAI chat completions (OpenAI, OpenRouter, xAI, Gemini, GitHub Models) --


def _openai_messages(messages):
    out = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]})
        elif m.get("tool_calls"):
            out.append(
                {
                    "role": "assistant",
                    "content": m["content"] or None,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                        }
                        for c in m["tool_calls"]
                    ],
                }
            )
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def openai_params(provider, model, req):
    params = {"model": model, "messages": _openai_messages(req.messages)}
    if req.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {"name": t["name"], "description": t["description"], "parameters": t["parameters"]},
            }
            for t in req.tools
        ]
    if isinstance(req.tool_choice, dict):
        params["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice["name"]}}
    elif req.tool_choice:
        params["tool_choice"] = req.tool_choice
    if req.max_tokens:
        # OpenAI's reasoning models accept only max_completion_tokens; the compatible APIs know max_tokens.
        params["max_completion_tokens" if provider == "openai" else "max_tokens"] = req.max_tokens
    if req.temperature is not None:
        params["temperature"] = req.temperature
    return params


def _openai_finish(reason, refusal):
    if refusal:
        return "refusal"
    return reason or "stop"


def _openai_usage(usage):
    if usage is None:
        return 0, 0, 0
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details else 0
    return usage.prompt_tokens or 0, usage.completion_tokens or 0, cached


async def _openai_complete(provider, model, req, timeout):
    client = _sdk_client(provider)
    resp = await client.chat.completions.create(**openai_params(provider, model, req), timeout=timeout)
    if not resp.choices:
        raise ProviderUnavailable(provider, "answer without choices")
    choice = resp.choices[0]
    msg = choice.message
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": _arguments(c.function.arguments)}
        for c in (msg.tool_calls or [])
        if getattr(c, "function", None) is not None
    ]
    refusal = getattr(msg, "refusal", None)
    inp, out, cached = _openai_usage(resp.usage)
    return Completion(
        provider=provider,
        model=resp.model or model,
        content=msg.content or refusal or "",
        tool_calls=calls,
        finish_reason=_openai_finish(choice.finish_reason, refusal),
        input_tokens=inp,
        output_tokens=out,
        cached_tokens=cached,
        request_id=getattr(resp, "_request_id", None) or "",
    )


class _Stream:
    """`async for` yields text deltas as they arrive; `result` is the Completion once exhausted."""

    def __init__(self, provider, model, sdk_stream):
        self.provider = provider
        self.model = model
        self._sdk = sdk_stream
        self.text = []
        self.result = None
        headers = getattr(getattr(sdk_stream, "response", None), "headers", {}) or {}
        self.request_id = headers.get("x-request-id") or headers.get("request-id") or ""

    async def __aiter__(self):
        # Read inside the caller's AIAdapter.aattempt, which translates the SDK's errors.
        async for text in self._events():
            yield text

    async def aclose(self):
        """Stop reading and release the connection: the provider sees the stream closed."""
        await self._sdk.close()


class OpenAIStream(_Stream):
    async def _events(self):
        calls = {}  # index -> {"id", "name", "args": [parts]}
        finish, refusal, usage, model = None, [], None, self.model
        async for chunk in self._sdk:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices or ():
                delta = choice.delta
                if choice.finish_reason:
                    finish = choice.finish_reason
                if delta is None:
                    continue
                if getattr(delta, "refusal", None):
                    refusal.append(delta.refusal)
                for tc in delta.tool_calls or ():
                    entry = calls.setdefault(tc.index, {"id": "", "name": "", "args": []})
                    if tc.id:
                        entry["id"] = tc.id
                    if tc.function is not None:
                        if tc.function.name:
                            entry["name"] += tc.function.name
                        if tc.function.arguments:
                            entry["args"].append(tc.function.arguments)
                if delta.content:
                    self.text.append(delta.content)
                    yield delta.content
        inp, out, cached = _openai_usage(usage)
        refusal_text = "".join(refusal)
        self.result = Completion(
            provider=self.provider,
            model=model,
            content="".join(self.text) or refusal_text,
            tool_calls=[
                {"id": c["id"], "name": c["name"], "arguments": _arguments("".join(c["args"]))}
                for _, c in sorted(calls.items())
            ],
            finish_reason=_openai_finish(finish, refusal_text),
            input_tokens=inp,
            output_tokens=out,
            cached_tokens=cached,
            request_id=self.request_id,
        )


async def _openai_stream(provider, model, req, timeout):
    client = _sdk_client(provider)
    sdk_stream = await client.chat.completions.create(
        **openai_params(provider, model, req), stream=True, stream_options={"include_usage": True}, timeout=timeout
    )
    return OpenAIStream(provider, model, sdk_stream)


# --- Anthropic messages --------------------------------------------------------

_ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
}


def _anthropic_messages(messages):
    """Canonical messages as Anthropic's: system apart, tool results as user blocks, roles alternating."""
    system, out = [], []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
            continue
        if m["role"] == "tool":
            role = "user"
            blocks = [{"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"]}]
        else:
            role = m["role"]
            blocks = [{"type": "text", "text": m["content"]}] if m["content"] else []
            blocks += [
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]}
                for c in m.get("tool_calls", ())
            ]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)  # consecutive tool results answer one assistant turn together
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def anthropic_params(model, req):
    system, messages = _anthropic_messages(req.messages)
    params = {"model": model, "messages": messages, "max_tokens": req.max_tokens or settings.AI_DEFAULT_MAX_TOKENS}
    if system:
        params["system"] = system
    if req.tools:
        params["tools"] = [
            {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]} for t in req.tools
        ]
    if isinstance(req.tool_choice, dict):
        params["tool_choice"] = {"type": "tool", "name": req.tool_choice["name"]}
    elif req.tool_choice:
        params["tool_choice"] = {"type": {"required": "any"}.get(req.tool_choice, req.tool_choice)}
    # No temperature: the Messages API (SDK 2.x) has no sampling parameters any more.
    return params


def _anthropic_usage(usage):
    if usage is None:
        return 0, 0, 0
    read = getattr(usage, "cache_read_input_tokens", None) or 0
    created = getattr(usage, "cache_creation_input_tokens", None) or 0
    # Anthropic counts cached and uncached input apart; the hub's input is the total.
    return (usage.input_tokens or 0) + read + created, usage.output_tokens or 0, read


async def _anthropic_complete(provider, model, req, timeout):
    client = _sdk_client(provider)
    msg = await client.messages.create(**anthropic_params(model, req), timeout=timeout)
    text, calls = [], []
    for block in msg.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            calls.append(
                {"id": block.id, "name": block.name, "arguments": block.input if isinstance(block.input, dict) else {}}
            )
    inp, out, cached = _anthropic_usage(msg.usage)
    return Completion(
        provider=provider,
        model=msg.model or model,
        content="".join(text),
        tool_calls=calls,
        finish_reason=_ANTHROPIC_FINISH.get(msg.stop_reason, msg.stop_reason or "stop"),
        input_tokens=inp,
        output_tokens=out,
        cached_tokens=cached,
        request_id=getattr(msg, "_request_id", None) or "",
    )


class AnthropicStream(_Stream):
    async def _events(self):
        calls = {}  # block index -> {"id", "name", "args": [parts]}
        stop, model, start_usage, out_tokens = None, self.model, None, 0
        async for event in self._sdk:
            kind = event.type
            if kind == "message_start":
                model = event.message.model or model
                start_usage = event.message.usage
                out_tokens = start_usage.output_tokens or 0
            elif kind == "content_block_start" and event.content_block.type == "tool_use":
                calls[event.index] = {"id": event.content_block.id, "name": event.content_block.name, "args": []}
            elif kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta" and delta.text:
                    self.text.append(delta.text)
                    yield delta.text
                elif delta.type == "input_json_delta" and event.index in calls:
                    calls[event.index]["args"].append(delta.partial_json)
            elif kind == "message_delta":
                stop = event.delta.stop_reason or stop
                if event.usage is not None and event.usage.output_tokens is not None:
                    out_tokens = event.usage.output_tokens  # cumulative
        inp, _, cached = _anthropic_usage(start_usage)
        self.result = Completion(
            provider=self.provider,
            model=model,
            content="".join(self.text),
            tool_calls=[
                {"id": c["id"], "name": c["name"], "arguments": _arguments("".join(c["args"]))}
                for _, c in sorted(calls.items())
            ],
            finish_reason=_ANTHROPIC_FINISH.get(stop, stop or "stop"),
            input_tokens=inp,
            output_tokens=out_tokens,
            cached_tokens=cached,
            request_id=self.request_id,
        )


async def _anthropic_stream(provider, model, req, timeout):
    client = _sdk_client(provider)
    sdk_stream = await client.messages.create(**anthropic_params(model, req), stream=True, timeout=timeout)
    return AnthropicStream(provider, model, sdk_stream)


# --- entry points ----------------------------------------------------------------


async def complete(provider, model, req, *, timeout):
    """One completion from one provider; call it inside `ADAPTERS[provider].aattempt(...)`, which turns the SDK's
    exceptions into integrations.errors types."""
    if provider == "anthropic":
        return await _anthropic_complete(provider, model, req, timeout)
    return await _openai_complete(provider, model, req, timeout)


async def stream(provider, model, req, *, timeout):
    """Open a streamed completion: the HTTP status is known on return; `async for` the text deltas.

    Open and read it inside `ADAPTERS[provider].aattempt(...)` (the SDK's exceptions are translated there)."""
    if provider == "anthropic":
        return await _anthropic_stream(provider, model, req, timeout)
    return await _openai_stream(provider, model, req, timeout)
