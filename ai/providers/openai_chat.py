"""OpenAI chat completions (OpenAI, OpenRouter, xAI, Gemini, GitHub Models): the request, the answer, the stream."""

import json
import math
import re
from decimal import Decimal

import httpx2
import orjson

from integrations.errors import ProviderUnavailable

from ..messages import Completion, thought_signature
from .adapters import error_in_answer
from .streams import _arguments, _Stream


def _openai_messages(messages, provider=None):
    out = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]})
        elif m.get("tool_calls"):
            out.append(
                {
                    "role": "assistant",
                    "content": m["content"] or None,
                    "tool_calls": [_openai_tool_call(c, provider, first=i == 0) for i, c in enumerate(m["tool_calls"])],
                }
            )
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


# What Gemini documents for a function call it did not sign (docs, "Thought signatures", FAQ: a conversation
# moved from another model): its validator skips the call. The same page's "Signatures for OpenAI compatibility"
# puts the signature field of this endpoint in tool_calls[].extra_content.google.thought_signature (the OpenAI
# compatibility page sends there for thought signatures), and the FAQ's dummy goes "in the thought signature
# field": that field here, not an assumption carried over from the native API.
UNSIGNED_FOR_GEMINI = "skip_thought_signature_validator"


def _openai_tool_call(call, provider, *, first):
    rendered = {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
    }
    if provider != "gemini":
        return rendered  # no other vendor knows the field
    # Sent back where Gemini's compatible endpoint put it (docs, "Thought signatures": Gemini 3 refuses with a 400
    # a step whose first function call lacks its signature; of parallel calls only the first is signed). A step
    # whose calls another vendor made (a fallback mid-tool-loop) has none: its first call gets the dummy.
    signature = call.get("thought_signature") or (UNSIGNED_FOR_GEMINI if first else None)
    if signature:
        rendered["extra_content"] = {"google": {"thought_signature": signature}}
    return rendered


def _signed(call, extra_content):
    """A parsed tool call with Gemini's thought signature, when its `extra_content` holds one."""
    signature = thought_signature(extra_content)
    if isinstance(signature, str) and signature:
        call["thought_signature"] = signature
    return call


# OpenAI's reasoning models (the o-series, gpt-5 but its chat model) take no sampling temperature: one that
# sets it is refused with 400 unsupported_value, which ends the route (temperature 0 is how callers ask for the
# answer cache). They are sent without it and answer as they always do.
_OPENAI_REASONING = re.compile(r"(o\d|gpt-5)(?!.*chat)")


def openai_params(provider, model, req):
    params = {"model": model, "messages": _openai_messages(req.messages, provider)}
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
    if req.temperature is not None and not (provider == "openai" and _OPENAI_REASONING.match(model)):
        params["temperature"] = req.temperature
    return params


def _openai_finish(reason, refusal, calls):
    if refusal:
        return "refusal"
    if calls and reason in (None, "stop"):
        # An answer holding tool calls says so whatever the vendor wrote: OpenAI ends a call forced by
        # tool_choice with "stop", Gemini's compatible stream every tool call (its non-streamed answer says
        # "tool_calls"), where Anthropic's tool_use always reads "tool_calls".
        return "tool_calls"
    return reason or "stop"


def _field(obj, name):
    """`name` of an SDK model (a streamed chunk's) or of the JSON object a non-streamed answer is read as."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _openai_usage(usage):
    if not usage:
        return 0, 0, 0
    details = _field(usage, "prompt_tokens_details")
    cached = (_field(details, "cached_tokens") or 0) if details else 0
    prompt, output = _field(usage, "prompt_tokens") or 0, _field(usage, "completion_tokens") or 0
    # OpenAI counts reasoning tokens inside completion_tokens; xAI (reasoning_tokens) and Gemini (thinking)
    # count them apart, in total_tokens only, and bill them as output all the same.
    output = max(output, (_field(usage, "total_tokens") or 0) - prompt)
    return prompt, output, cached


def _openrouter_cost(provider, usage):
    """The USD OpenRouter charged for an answer, from its usage (docs, "Usage Accounting": every response's usage
    has `cost`, in credits, 1 credit = 1 USD; no request parameter is needed any more), or None. With the
    account's own provider key (BYOK, `is_byok`), `cost` is OpenRouter's fee alone and the provider bills the
    inference to that key: `cost_details.upstream_inference_cost` is added."""
    if provider != "openrouter" or not usage:
        return None
    cost = _field(usage, "cost")
    if not _is_amount(cost):
        return None
    total = Decimal(str(cost))
    details = _field(usage, "cost_details")
    upstream = details.get("upstream_inference_cost") if isinstance(details, dict) else None
    if _field(usage, "is_byok") is True and _is_amount(upstream):
        total += Decimal(str(upstream))
    return total.quantize(Decimal("0.000001"))


def _is_amount(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


# The answer is asked for with the client's own `post` (its auth, headers, timeout and error for a non-2xx status,
# which `translate` reads as before) and read as plain JSON: `chat.completions.create` first walks the request
# through the SDK's type-driven transform (a no-op for these plain JSON values: tests/ai/test_completions.py
# compares the bodies) and builds pydantic models of the answer that are read once here. That was ~0.5 ms of CPU
# of a completion's ~5 in the web worker (bench_ai_serving, issue 11), where LiteLLM also reads the raw answer.
async def _openai_complete(client, provider, model, req, timeout):
    response = await client.post(
        "/chat/completions",
        body=openai_params(provider, model, req),
        cast_to=httpx2.Response,
        options={"timeout": timeout},
    )
    try:
        resp = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(provider, "an answer that is not JSON") from None
    if not isinstance(resp, dict):
        raise ProviderUnavailable(provider, "an answer that is not a JSON object")
    choices = resp.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        error = resp.get("error")
        if isinstance(error, dict):
            raise error_in_answer(provider, error)  # OpenRouter's failure after the 200, in the body
        raise ProviderUnavailable(provider, "answer without choices")
    choice = choices[0]
    msg = choice.get("message")
    if not isinstance(msg, dict):
        raise ProviderUnavailable(provider, "an answer whose message is not a JSON object")
    calls = [
        _signed(
            {
                "id": c.get("id"),
                "name": c["function"].get("name"),
                "arguments": _arguments(c["function"].get("arguments")),
            },
            c.get("extra_content"),
        )
        for c in (msg.get("tool_calls") or [])
        if isinstance(c, dict) and isinstance(c.get("function"), dict)
    ]
    refusal = msg.get("refusal")
    usage = resp.get("usage")
    inp, out, cached = _openai_usage(usage)
    return Completion(
        provider=provider,
        model=resp.get("model") or model,
        content=msg.get("content") or refusal or "",
        tool_calls=calls,
        finish_reason=_openai_finish(choice.get("finish_reason"), refusal, calls),
        input_tokens=inp,
        output_tokens=out,
        cached_tokens=cached,
        request_id=response.headers.get("x-request-id") or "",
        provider_cost_usd=_openrouter_cost(provider, usage),
    )


def _call_index(calls, tc):
    """Which call a streamed tool-call delta adds to: its `index`, as OpenAI sends it. Gemini's compatible stream
    sends none: there a delta with a new id starts the next call, one without an id continues the last."""
    index = getattr(tc, "index", None)
    if index is not None:
        return index
    last = max(calls, default=None)
    if last is None or (tc.id and calls[last]["id"] and tc.id != calls[last]["id"]):
        return 0 if last is None else last + 1
    return last


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
                    entry = calls.setdefault(_call_index(calls, tc), {"id": "", "name": "", "args": [], "extra": None})
                    if tc.id:
                        entry["id"] = tc.id
                    entry["extra"] = getattr(tc, "extra_content", None) or entry["extra"]
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
        tool_calls = [
            _signed({"id": c["id"], "name": c["name"], "arguments": _arguments("".join(c["args"]))}, c["extra"])
            for _, c in sorted(calls.items())
        ]
        self.result = Completion(
            provider=self.provider,
            model=model,
            content="".join(self.text) or refusal_text,
            tool_calls=tool_calls,
            finish_reason=_openai_finish(finish, refusal_text, tool_calls),
            input_tokens=inp,
            output_tokens=out,
            cached_tokens=cached,
            request_id=self.request_id,
            provider_cost_usd=_openrouter_cost(self.provider, usage),
        )


async def _openai_stream(client, provider, model, req, timeout):
    sdk_stream = await client.chat.completions.create(
        **openai_params(provider, model, req), stream=True, stream_options={"include_usage": True}, timeout=timeout
    )
    return OpenAIStream(provider, model, sdk_stream)
