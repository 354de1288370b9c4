"""Anthropic messages: the request, the answer, the stream."""

from django.conf import settings

from ..messages import Completion
from .streams import _arguments, _Stream

_ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",  # the answer reached the context window before max_tokens
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
            block = {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"]}
            if m.get("is_error"):
                block["is_error"] = True
            blocks = [block]
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
    if req.cache_ttl:
        params["cache_control"] = {"type": "ephemeral", "ttl": req.cache_ttl}
    # No temperature: the Messages API (SDK 2.x) has no sampling parameters any more.
    return params


def _anthropic_usage(usage):
    if usage is None:
        return 0, 0, 0
    read = getattr(usage, "cache_read_input_tokens", None) or 0
    created = getattr(usage, "cache_creation_input_tokens", None) or 0
    # Anthropic counts cached and uncached input apart; the hub's input is the total.
    return (usage.input_tokens or 0) + read + created, usage.output_tokens or 0, read


def _anthropic_input(usage, cache_ttl=None):
    """A Completion's input fields from Anthropic's usage (the answer's, or message_start's): with the input written
    to the prompt cache (`cache_creation_input_tokens`, billed at 1.25x the input price, 2x for the part written
    for an hour: `cache_creation.ephemeral_1h_input_tokens`) apart from the plain input.

    A usage without that breakdown (`cache_creation` is optional in the SDK's Usage) of a request that asked for
    the hour-long cache (`cache_ttl` "1h", every write then an hour's) counts all its writes at the hour's rate,
    not as five-minute ones it was not billed for."""
    inp, _, cached = _anthropic_usage(usage)
    written = (getattr(usage, "cache_creation_input_tokens", None) or 0) if usage is not None else 0
    ttl = getattr(usage, "cache_creation", None) if usage is not None else None
    if ttl is not None:
        written_1h = getattr(ttl, "ephemeral_1h_input_tokens", None) or 0
    else:
        written_1h = written if cache_ttl == "1h" else 0
    return {
        "input_tokens": inp,
        "cached_tokens": cached,
        "cache_write_tokens": written,
        "cache_write_1h_tokens": min(written_1h, written),
    }


async def _anthropic_complete(client, provider, model, req, timeout):
    msg = await client.messages.create(**anthropic_params(model, req), timeout=timeout)
    text, calls = [], []
    for block in msg.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            calls.append(
                {"id": block.id, "name": block.name, "arguments": block.input if isinstance(block.input, dict) else {}}
            )
    return Completion(
        provider=provider,
        model=msg.model or model,
        content="".join(text),
        tool_calls=calls,
        finish_reason=_ANTHROPIC_FINISH.get(msg.stop_reason, msg.stop_reason or "stop"),
        output_tokens=_anthropic_usage(msg.usage)[1],
        **_anthropic_input(msg.usage, req.cache_ttl),
        request_id=getattr(msg, "_request_id", None) or "",
    )


class AnthropicStream(_Stream):
    start_usage = None  # message_start's usage: the input Anthropic bills, known before the first delta
    cache_ttl = None  # the prompt cache TTL the request asked for (_anthropic_input)

    def input_so_far(self):
        if self.start_usage is None:
            return None
        return _anthropic_input(self.start_usage, self.cache_ttl)

    async def _events(self):
        calls = {}  # block index -> {"id", "name", "args": [parts]}
        stop, model, out_tokens = None, self.model, 0
        async for event in self._sdk:
            kind = event.type
            if kind == "message_start":
                model = event.message.model or model
                self.start_usage = event.message.usage
                out_tokens = self.start_usage.output_tokens or 0
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
        self.result = Completion(
            provider=self.provider,
            model=model,
            content="".join(self.text),
            tool_calls=[
                {"id": c["id"], "name": c["name"], "arguments": _arguments("".join(c["args"]))}
                for _, c in sorted(calls.items())
            ],
            finish_reason=_ANTHROPIC_FINISH.get(stop, stop or "stop"),
            output_tokens=out_tokens,
            **_anthropic_input(self.start_usage, self.cache_ttl),
            request_id=self.request_id,
        )


async def _anthropic_stream(client, provider, model, req, timeout):
    sdk_stream = await client.messages.create(**anthropic_params(model, req), stream=True, timeout=timeout)
    stream = AnthropicStream(provider, model, sdk_stream)
    stream.cache_ttl = req.cache_ttl
    return stream
