"""The hub's one shape for a completion, and the translation from what clients send.

Clients may send messages, tools and tool choices in OpenAI's chat format or in
Anthropic's messages format (or echo back the `tool_calls` the hub returned);
everything is normalised here into one canonical form that the provider
adapters render for their vendor:

    message   {"role": "system"|"user"|"assistant"|"tool", "content": str,
               "tool_calls": [{"id", "name", "arguments": dict,     # assistant only
                               "thought_signature": str}],          # present when Gemini gave one
               "tool_call_id": str,                                 # tool only
               "is_error": True}                                    # tool only, present when the tool failed
    tool      {"name", "description", "parameters": JSON schema}
    tool_choice  None | "auto" | "none" | "required" | {"name": str}

Parsing raises `MessageError` with a sentence naming the offending item, which
the serializer turns into a 400.
"""

import json
from dataclasses import dataclass, field
from decimal import Decimal


class MessageError(ValueError):
    pass


@dataclass
class CompletionRequest:
    messages: list
    tools: list = field(default_factory=list)
    tool_choice: object = None
    max_tokens: int | None = None
    temperature: float | None = None
    # Anthropic's prompt cache TTL the client asked for ("5m", "1h"), or None. Not in canonical(): it changes
    # what a write costs, not the answer.
    cache_ttl: str | None = None

    def canonical(self):
        """A JSON-able form of everything that decides the answer (the cache key's input)."""
        return {
            "messages": self.messages,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def estimated_input_tokens(self):
        # About four characters a token: enough to pace a tokens-per-minute bucket.
        size = len(json.dumps(self.messages)) + len(json.dumps(self.tools))
        return max(1, size // 4)


@dataclass
class Completion:
    """One provider's answer in the hub's terms."""

    provider: str
    model: str
    content: str
    tool_calls: list
    finish_reason: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    # Input written to the provider's prompt cache (part of input_tokens; Anthropic bills it above the input
    # price), and the part of it written for an hour rather than five minutes (dearer still).
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    request_id: str = ""
    # The route's model name, which the price table knows (providers answer with dated versions).
    price_model: str = ""
    # What the provider says it charged for this answer (OpenRouter's usage.cost), booked instead of the price
    # table's estimate; None when it does not say.
    provider_cost_usd: Decimal | None = None

    def units(self):
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }


def _text(content, where):
    """Text from a string or a list of text parts (both vendors use {"type": "text", "text": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise MessageError(f"{where}: only text content parts are supported.")
        return "".join(parts)
    raise MessageError(f"{where}: content must be a string or a list of text parts.")


def parse_arguments(raw, where="tool call"):
    """Tool-call arguments as a dict, whether they arrive as a JSON string (OpenAI) or an object (Anthropic)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            raise MessageError(f"{where}: arguments are not valid JSON.") from None
        except RecursionError:
            raise MessageError(f"{where}: arguments are nested too deeply.") from None
        if isinstance(value, dict):
            return value
    raise MessageError(f"{where}: arguments must be a JSON object.")


def _tool_call(raw, where):
    if not isinstance(raw, dict):
        raise MessageError(f"{where}: a tool call must be an object.")
    fn = raw.get("function") if isinstance(raw.get("function"), dict) else raw
    name = fn.get("name")
    call_id = raw.get("id")
    if not isinstance(name, str) or not name or not isinstance(call_id, str) or not call_id:
        raise MessageError(f"{where}: a tool call needs an id and a name.")
    args = fn.get("arguments", fn.get("input"))
    call = {"id": call_id, "name": name, "arguments": parse_arguments(args, where)}
    signature = raw.get("thought_signature", thought_signature(raw.get("extra_content")))
    if signature is not None:
        if not isinstance(signature, str) or not signature:
            raise MessageError(f"{where}: thought_signature must be a non-empty string.")
        call["thought_signature"] = signature
    return call


def thought_signature(extra_content):
    """The signature in Gemini's `extra_content` of a tool call ({"google": {"thought_signature": ...}}), or None.

    Gemini 3 signs its reasoning on each function call and refuses (400) a conversation that sends a call back
    without its signature; its OpenAI-compatible endpoint carries it there, both ways. The hub hands it to the
    client as the call's `thought_signature`, and takes it back in either shape."""
    google = extra_content.get("google") if isinstance(extra_content, dict) else None
    return google.get("thought_signature") if isinstance(google, dict) else None


def _tool_result_text(content, where):
    if isinstance(content, (dict, list)) and not (
        isinstance(content, list)
        and all(isinstance(p, (str, dict)) and (isinstance(p, str) or p.get("type") == "text") for p in content)
    ):
        return json.dumps(content)
    return _text(content, where)


def _from_anthropic_blocks(role, blocks, where):
    """An Anthropic-format message (content blocks) as one or more canonical messages."""
    out, text, calls = [], [], []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        here = f"{where}.content[{j}]"
        if kind == "text" or isinstance(block, str):
            text.append(block if isinstance(block, str) else _text([block], here))
        elif kind == "tool_use" and role == "assistant":
            calls.append(
                _tool_call({"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}, here)
            )
        elif kind == "tool_result" and role == "user":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise MessageError(f"{here}: a tool_result needs tool_use_id.")
            is_error = block.get("is_error", False)
            if not isinstance(is_error, bool):
                raise MessageError(f"{here}: is_error must be true or false.")
            result = {"role": "tool", "tool_call_id": call_id, "content": _tool_result_text(block.get("content"), here)}
            if is_error:
                # The model must hear that the tool failed, not read its error text as an answer (and the
                # answer cache must not take a failed call for a successful one with the same text).
                result["is_error"] = True
            out.append(result)
        else:
            raise MessageError(f"{here}: unsupported content block {kind!r} for a {role} message.")
    if calls:
        out.append({"role": "assistant", "content": "".join(text), "tool_calls": calls})
    elif text:
        out.append({"role": role, "content": "".join(text)})
    return out


def parse_messages(raw):
    if not isinstance(raw, list) or not raw:
        raise MessageError("messages must be a non-empty list.")
    messages = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise MessageError(f"{where} must be an object.")
        role = msg.get("role")
        content = msg.get("content")
        if role not in ("system", "user", "assistant", "tool"):
            raise MessageError(f"{where}: role must be system, user, assistant or tool.")
        is_anthropic_blocks = isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") in ("tool_use", "tool_result") for b in content
        )
        if is_anthropic_blocks and role in ("user", "assistant"):
            messages.extend(_from_anthropic_blocks(role, content, where))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise MessageError(f"{where}: a tool message needs tool_call_id.")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": _tool_result_text(content, where)})
        elif role == "assistant" and msg.get("tool_calls"):
            if not isinstance(msg["tool_calls"], list):
                raise MessageError(f"{where}: tool_calls must be a list.")
            calls = [_tool_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(msg["tool_calls"])]
            messages.append({"role": "assistant", "content": _text(content, where), "tool_calls": calls})
        else:
            messages.append({"role": role, "content": _text(content, where)})
    known = {c["id"] for m in messages for c in m.get("tool_calls", ())}
    for m in messages:
        if m["role"] == "tool" and m["tool_call_id"] not in known:
            raise MessageError(
                f"A tool result answers {m['tool_call_id']!r}, which no assistant tool call in messages has."
            )
    return messages


def parse_tools(raw):
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise MessageError("tools must be a list.")
    tools = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise MessageError(f"{where} must be an object.")
        fn = tool.get("function") if tool.get("type") == "function" else tool  # OpenAI wraps, Anthropic does not
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise MessageError(f"{where}: a tool needs a name.")
        schema = fn.get("parameters", fn.get("input_schema")) or {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            raise MessageError(f"{where}: parameters must be a JSON schema object.")
        tools.append({"name": fn["name"], "description": fn.get("description") or "", "parameters": schema})
    return tools


def parse_tool_choice(raw, tools):
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        choice = raw
    elif raw == "any":  # Anthropic's word for "required"
        choice = "required"
    elif isinstance(raw, dict):
        kind = raw.get("type")
        if kind in ("auto", "none", "any"):
            choice = "required" if kind == "any" else kind
        elif kind == "function" and isinstance(raw.get("function"), dict):
            choice = {"name": raw["function"].get("name")}
        else:  # {"type": "tool", "name": ...} (Anthropic) or {"name": ...}
            choice = {"name": raw.get("name")}
    else:
        raise MessageError("tool_choice must be auto, none, required or name a tool.")
    if isinstance(choice, dict) and not isinstance(choice["name"], str):
        raise MessageError("tool_choice must name a tool by a string.")
    if isinstance(choice, dict) and choice["name"] not in {t["name"] for t in tools}:
        raise MessageError("tool_choice names a tool that is not in tools.")
    if choice != "none" and choice is not None and not tools:
        raise MessageError("tool_choice needs tools.")
    return choice


def parse_request(data):
    tools = parse_tools(data.get("tools"))
    return CompletionRequest(
        messages=parse_messages(data.get("messages")),
        tools=tools,
        tool_choice=parse_tool_choice(data.get("tool_choice"), tools),
        max_tokens=data.get("max_tokens"),
        temperature=data.get("temperature"),
        cache_ttl=(data.get("cache_control") or {}).get("ttl"),
    )
