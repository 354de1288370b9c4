"""Fake AI provider endpoints behind an httpx2.MockTransport.

The real `openai` and `anthropic` SDKs build every request and parse every
answer; only the socket is replaced. Each provider has its own fake host (set
as its *_BASE_URL), a queue of answers, and a log of the requests it received.
"""

import json
from collections import defaultdict

import httpx2

BASE_URLS = {
    "OPENAI_BASE_URL": "https://openai.test/v1",
    "ANTHROPIC_BASE_URL": "https://anthropic.test",
    "OPENROUTER_BASE_URL": "https://openrouter.test/api/v1",
    "XAI_BASE_URL": "https://xai.test/v1",
    "GEMINI_BASE_URL": "https://gemini.test/v1beta/openai/",
    "GITHUB_MODELS_BASE_URL": "https://github-models.test/inference",
}
HOSTS = {
    "openai.test": "openai",
    "anthropic.test": "anthropic",
    "openrouter.test": "openrouter",
    "xai.test": "xai",
    "gemini.test": "gemini",
    "github-models.test": "github_models",
}
KEYS = {
    "OPENAI_API_KEY": "sk-openai-test-secret-0001",
    "ANTHROPIC_API_KEY": "sk-ant-test-secret-0002",
    "OPENROUTER_API_KEY": "sk-or-test-secret-0003",
    "XAI_API_KEY": "xai-test-secret-0004",
    "GEMINI_API_KEY": "gemini-test-secret-0005",
    "GITHUB_MODELS_TOKEN": "ghp_test_secret_0006",
}


class Sent:
    def __init__(self, provider, request):
        self.provider = provider
        self.request = request
        self.json = json.loads(request.content) if request.content else {}
        self.headers = request.headers


class FakeAI:
    def __init__(self):
        self.queues = defaultdict(list)
        self.sent = []
        self.unexpected = []

    def add(self, provider, *responses):
        """Queue answers (httpx2.Response, or callables taking the request) for a provider."""
        self.queues[provider].extend(responses)

    def to(self, provider):
        return [s for s in self.sent if s.provider == provider]

    def handler(self, request):
        provider = HOSTS.get(request.url.host, request.url.host)
        self.sent.append(Sent(provider, request))
        if not self.queues[provider]:
            self.unexpected.append(f"{request.method} {request.url}")
            return httpx2.Response(500, json={"error": {"message": "unexpected request in test"}})
        answer = self.queues[provider].pop(0)
        return answer(request) if callable(answer) else answer


# --- answers --------------------------------------------------------------------


def openai_chat(
    content="Hello!",
    *,
    tool_calls=None,
    finish_reason=None,
    usage=(12, 5, 0),
    model="gpt-4o-mini",
    refusal=None,
    request_id="req_openai_1",
    reasoning_apart=0,
    extra_usage=None,
):
    """`reasoning_apart`: reasoning tokens counted outside completion_tokens but in total_tokens (xAI, Gemini);
    `extra_usage`: fields a vendor adds to `usage` (OpenRouter's cost)."""
    message = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for c in tool_calls
        ]
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop")}
        ],
        "usage": {**_openai_usage_body(usage, reasoning_apart), **(extra_usage or {})},
    }
    return httpx2.Response(200, json=body, headers={"x-request-id": request_id})


def _openai_usage_body(usage, reasoning_apart=0):
    body = {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": usage[0] + usage[1] + reasoning_apart,
        "prompt_tokens_details": {"cached_tokens": usage[2]},
    }
    if reasoning_apart:
        body["completion_tokens_details"] = {"reasoning_tokens": reasoning_apart}
    return body


def anthropic_message(
    text="Hello!",
    *,
    tool_uses=None,
    stop_reason=None,
    usage=(12, 5, 0),
    model="claude-haiku-4-5-20251001",
    request_id="req_ant_1",
    extra_usage=None,
):
    """`extra_usage`: more of Anthropic's usage fields (its cache writes)."""
    content = [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": t["id"], "name": t["name"], "input": t["arguments"]} for t in tool_uses or ()
    ]
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage[0],
            "output_tokens": usage[1],
            "cache_read_input_tokens": usage[2],
            **(extra_usage or {}),
        },
    }
    return httpx2.Response(200, json=body, headers={"request-id": request_id})


def error(status, message="boom", *, code=None, type_=None, headers=None, anthropic=False):
    if anthropic:
        body = {"type": "error", "error": {"type": type_ or "api_error", "message": message}}
    else:
        body = {"error": {"message": message, "type": type_ or code or "server_error", "code": code}}
    return httpx2.Response(status, json=body, headers=headers or {})


class Body(httpx2.AsyncByteStream):
    """A response body sent chunk by chunk, which notes whether the client closed it.

    `gate` (an asyncio.Event factory's product, set from the test) holds the
    stream after `hold_after` chunks, like a provider still thinking: the test
    decides when it goes on, so nothing depends on timing.
    """

    def __init__(self, chunks, *, hold_after=None, gate=None):
        self.chunks = chunks
        self.sent = 0
        self.closed = False
        self.hold_after = hold_after
        self.gate = gate

    async def __aiter__(self):
        for chunk in self.chunks:
            if self.hold_after is not None and self.sent == self.hold_after:
                await self.gate.wait()
            self.sent += 1
            yield chunk

    async def aclose(self):
        self.closed = True


def openai_sse_chunks(
    texts, *, usage=(12, 5, 0), model="gpt-4o-mini", tool_calls=None, reasoning_apart=0, extra_usage=None
):
    def chunk(delta, finish=None):
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": t}) for t in texts]
    for i, c in enumerate(tool_calls or ()):
        args = json.dumps(c["arguments"])
        half = len(args) // 2
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": args[:half]},
                        }
                    ]
                }
            )
        )
        events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]}))
    events.append(chunk({}, "tool_calls" if tool_calls else "stop"))
    events.append(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [],
            "usage": {**_openai_usage_body(usage, reasoning_apart), **(extra_usage or {})},
        }
    )
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def anthropic_sse_chunks(
    texts, *, usage=(12, 5, 0), model="claude-haiku-4-5-20251001", tool_uses=None, error_after=None, extra_usage=None
):
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": usage[0],
                        "output_tokens": 1,
                        "cache_read_input_tokens": usage[2],
                        **(extra_usage or {}),
                    },
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    for i, t in enumerate(texts):
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
            )
        )
        if error_after is not None and i + 1 == error_after:
            events.append(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
            return [f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    for j, t in enumerate(tool_uses or (), start=1):
        args = json.dumps(t["arguments"])
        events += [
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": j,
                    "content_block": {"type": "tool_use", "id": t["id"], "name": t["name"], "input": {}},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": j,
                    "delta": {"type": "input_json_delta", "partial_json": args[:3]},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": j,
                    "delta": {"type": "input_json_delta", "partial_json": args[3:]},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": j}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if tool_uses else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage[1]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events]


def sse_response(chunks, *, request_id="req_stream_1", hold_after=None, gate=None):
    body = Body(chunks, hold_after=hold_after, gate=gate)
    response = httpx2.Response(
        200,
        stream=body,
        headers={"content-type": "text/event-stream", "x-request-id": request_id, "request-id": request_id},
    )
    response.body_stream = body
    return response


def parse_sse(raw):
    """[(event, data)] from an SSE body."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields.get("event"), json.loads(fields["data"])))
    return out
