import asyncio

import pytest
from asgiref.sync import async_to_sync

from ai.models import AiRequest
from integrations.models import ProviderCall
from tests.ai.fakes import anthropic_sse_chunks, error, openai_sse_chunks, parse_sse, sse_response

pytestmark = pytest.mark.django_db


def _read(resp):
    return parse_sse(resp.raw)


def test_openai_streams_deltas_then_a_final_event_with_usage_and_cost(fake_ai, complete):
    fake_ai.add("openai", sse_response(openai_sse_chunks(["Hel", "lo", "!"], usage=(1000, 3, 0))))
    resp = complete(stream=True)
    assert resp.status_code == 200
    assert resp["Content-Type"] == "text/event-stream"
    events = _read(resp)
    assert events[:3] == [("delta", {"content": "Hel"}), ("delta", {"content": "lo"}), ("delta", {"content": "!"})]
    kind, done = events[3]
    assert kind == "done" and len(events) == 4
    assert (done["provider"], done["content"], done["finish_reason"]) == ("openai", "Hello!", "stop")
    assert done["usage"] == {"input_tokens": 1000, "output_tokens": 3, "cached_tokens": 0}
    assert done["cost_usd"] == "0.000152"  # (1000 x 0.15 + 3 x 0.60) / 1M
    assert fake_ai.to("openai")[0].json["stream_options"] == {"include_usage": True}
    call = ProviderCall.objects.get()
    assert (call.operation, call.outcome, call.units["output_tokens"]) == ("completion.stream", "ok", 3)
    assert call.provider_request_id == "req_stream_1"
    assert AiRequest.objects.get().stream is True


def test_anthropic_streams_deltas_tool_calls_and_usage(fake_ai, complete):
    tool = {"id": "toolu_1", "name": "lookup", "arguments": {"q": "paris"}}
    fake_ai.add(
        "anthropic", sse_response(anthropic_sse_chunks(["Let me ", "look."], usage=(40, 9, 10), tool_uses=[tool]))
    )
    events = _read(
        complete(task="writing", stream=True, tools=[{"name": "lookup", "input_schema": {"type": "object"}}])
    )
    assert [e for e in events if e[0] == "delta"] == [
        ("delta", {"content": "Let me "}),
        ("delta", {"content": "look."}),
    ]
    kind, done = events[-1]
    assert kind == "done"
    assert done["content"] == "Let me look."
    assert done["tool_calls"] == [tool]
    assert done["finish_reason"] == "tool_calls"
    assert done["usage"] == {"input_tokens": 50, "output_tokens": 9, "cached_tokens": 10}


def test_openai_streamed_tool_call_arguments_are_assembled(fake_ai, complete):
    tool = {"id": "call_9", "name": "lookup", "arguments": {"q": "lyon", "n": 3}}
    fake_ai.add("openai", sse_response(openai_sse_chunks([], tool_calls=[tool])))
    events = _read(complete(stream=True, tools=[{"name": "lookup"}]))
    assert events == [("done", events[-1][1])]
    assert events[-1][1]["tool_calls"] == [tool]


def test_a_stream_falls_back_when_the_first_provider_fails_before_the_first_byte(fake_ai, complete):
    fake_ai.add("openai", error(503, "down"))
    fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["fine"])))
    events = _read(complete(stream=True))
    done = events[-1][1]
    assert (done["provider"], done["content"]) == ("anthropic", "fine")
    assert [f["provider"] for f in done["fallbacks"]] == ["openai"]


def test_a_stream_with_every_provider_down_answers_json_503(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    fake_ai.add("openai", error(500))
    resp = complete(stream=True)
    assert resp.status_code == 503
    assert resp.json()["error"] == "ai_unavailable"


def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event_and_no_fallback(fake_ai, complete):
    fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["partial ", "answer"], error_after=1)))
    events = _read(complete(task="writing", stream=True))
    assert events[0] == ("delta", {"content": "partial "})
    kind, body = events[-1]
    assert (kind, body["error"], body["provider"]) == ("error", "provider_unavailable", "anthropic")
    assert fake_ai.to("openai") == []
    assert ProviderCall.objects.get().outcome == "error"
    assert AiRequest.objects.get().outcome == "failed"


# Outside a test transaction: the ASGI handler sends request_started and
# request_finished, which close a connection whose autocommit the test's atomic
# block changed.
@pytest.mark.django_db(transaction=True)
def test_a_client_that_disconnects_stops_the_upstream_stream(fake_ai, asgi_completion, user):
    upstream = sse_response(openai_sse_chunks(["one ", "two ", "three ", "four"] * 50), hold_after=3, gate=None)

    async def scenario():
        upstream.body_stream.gate = asyncio.Event()  # never set: the provider is still "thinking"
        fake_ai.add("openai", upstream)
        call = asgi_completion({"stream": True})
        await call.got_body.wait()
        assert parse_sse(call.raw)[0] == ("delta", {"content": "one "})
        call.disconnect()  # what the ASGI server reports when the client goes away
        await call.task

    async_to_sync(scenario)()
    assert upstream.body_stream.closed
    assert upstream.body_stream.sent < 50
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.finish_reason, logged.provider) == ("client_closed", "client_closed", "openai")
    assert logged.input_tokens > 0  # the partial answer is still booked
    assert ProviderCall.objects.get().outcome == "ok"


def test_a_cached_answer_is_replayed_as_a_stream(fake_ai, complete):
    fake_ai.add("openai", sse_response(openai_sse_chunks(["same"])))
    first = _read(complete(stream=True, temperature=0))
    second = _read(complete(stream=True, temperature=0))
    assert second[0] == ("delta", {"content": "same"})
    assert second[-1][1]["cached"] is True and first[-1][1]["cached"] is False
    assert len(fake_ai.to("openai")) == 1
