import asyncio
import json
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from ai.models import AiRequest
from integrations import aio
from integrations.models import IdempotencyRecord, ProviderCall
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
    assert done["usage"] == {"input_tokens": 1000, "output_tokens": 3, "cached_tokens": 0, "cache_write_tokens": 0}
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
    assert done["usage"] == {"input_tokens": 50, "output_tokens": 9, "cached_tokens": 10, "cache_write_tokens": 0}


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


def test_a_stream_the_provider_breaks_off_is_booked_with_what_it_streamed(fake_ai, complete, user):
    """The provider billed the input and the answer it streamed before its error: booked as a stream the client
    left is (the input Anthropic counted in message_start, the answer estimated from its text), not at $0."""
    from ai.models import AiSpend, AiUsageMonthly

    fake_ai.add(
        "anthropic", sse_response(anthropic_sse_chunks(["partial ", "answer"], usage=(10_000, 5, 0), error_after=1))
    )
    events = _read(complete(task="writing", stream=True))
    assert events[-1][0] == "error"
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.error_code, logged.finish_reason) == ("failed", "provider_unavailable", "error")
    assert (logged.input_tokens, logged.output_tokens) == (10_000, 2)  # "partial " is about two tokens
    # claude-sonnet-4-6: (10,000 x 3.00 + 2 x 15.00) / 1M
    assert logged.cost_usd == Decimal("0.030030")
    call = ProviderCall.objects.get()
    assert (call.outcome, call.cost_usd, call.units["output_tokens"]) == ("error", Decimal("0.030030"), 2)
    month = AiUsageMonthly.objects.get(owner=user)
    assert (month.requests, month.input_tokens, month.cost_usd) == (1, 10_000, Decimal("0.030030"))
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (Decimal("0.030030"), 0)


# Outside a test transaction: the ASGI handler sends request_started and
# request_finished, which close a connection whose autocommit the test's atomic
# block changed.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("on_server_loop", [False, True], ids=["booked-inline", "booked-after"])
def test_a_client_that_disconnects_stops_the_upstream_stream(
    fake_ai, asgi_completion, user, server_loop, on_server_loop
):
    upstream = sse_response(openai_sse_chunks(["one ", "two ", "three ", "four"] * 50), hold_after=3, gate=None)

    async def scenario():
        if on_server_loop:
            server_loop()
        upstream.body_stream.gate = asyncio.Event()  # never set: the provider is still "thinking"
        fake_ai.add("openai", upstream)
        call = asgi_completion({"stream": True})
        await call.got_body.wait()
        assert parse_sse(call.raw)[0] == ("delta", {"content": "one "})
        call.disconnect()  # what the ASGI server reports when the client goes away
        await call.task
        await aio.settle(timeout=10)

    async_to_sync(scenario)()
    assert upstream.body_stream.closed
    assert upstream.body_stream.sent < 50
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.finish_reason, logged.provider) == ("client_closed", "client_closed", "openai")
    assert logged.input_tokens > 0  # the partial answer is still booked
    assert ProviderCall.objects.get().outcome == "ok"


@pytest.mark.django_db(transaction=True)
def test_a_client_gone_from_an_anthropic_stream_is_booked_with_the_input_anthropic_counted(
    fake_ai, asgi_completion, user
):
    # Anthropic's message_start says how many input tokens it bills (here 40,000 of them, 30,000 read from its
    # cache): the booking of a stream cut short uses them, not the hub's four-characters-a-token guess.
    chunks = anthropic_sse_chunks(["one ", "two ", "three ", "four"] * 50, usage=(10_000, 5, 30_000))
    upstream = sse_response(chunks, hold_after=3, gate=None)  # message_start, a block's start, "one "

    async def scenario():
        upstream.body_stream.gate = asyncio.Event()  # never set: the provider is still "thinking"
        fake_ai.add("anthropic", upstream)
        call = asgi_completion({"stream": True, "task": "writing"})
        await call.got_body.wait()
        call.disconnect()
        await call.task
        await aio.settle(timeout=10)

    async_to_sync(scenario)()
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.provider) == ("client_closed", "anthropic")
    assert (logged.input_tokens, logged.cached_tokens) == (40_000, 30_000)
    # claude-sonnet-4-6: (10,000 x 3.00 + 30,000 x 0.30 + 1 x 15.00) / 1M, "one " being a token of answer
    assert logged.cost_usd == Decimal("0.039015")
    assert ProviderCall.objects.get().units["input_tokens"] == 40_000


def test_a_cached_answer_is_replayed_as_a_stream(fake_ai, complete):
    fake_ai.add("openai", sse_response(openai_sse_chunks(["same"])))
    first = _read(complete(stream=True, temperature=0))
    second = _read(complete(stream=True, temperature=0))
    assert second[0] == ("delta", {"content": "same"})
    assert second[-1][1]["cached"] is True and first[-1][1]["cached"] is False
    assert len(fake_ai.to("openai")) == 1


def test_a_repeated_stream_with_the_same_idempotency_key_is_replayed_not_billed_again(fake_ai, complete):
    fake_ai.add("openai", sse_response(openai_sse_chunks(["Hel", "lo"], usage=(1000, 3, 0))))
    first = complete(stream=True, headers={"Idempotency-Key": "stream-1"})
    again = complete(stream=True, headers={"Idempotency-Key": "stream-1"})
    first_events, replayed = _read(first), _read(again)
    assert again["Idempotent-Replayed"] == "true" and again["Content-Type"] == "text/event-stream"
    # The same final answer, as a short stream: one delta with the whole text, then the same `done`.
    assert replayed == [("delta", {"content": "Hello"}), ("done", first_events[-1][1])]
    assert len(fake_ai.to("openai")) == 1
    assert ProviderCall.objects.count() == 1 and AiRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_repeat_while_the_first_stream_is_still_running_is_a_409(fake_ai, asgi_completion):
    gate = asyncio.Event()
    fake_ai.add("openai", sse_response(openai_sse_chunks(["slow ", "answer"]), hold_after=2, gate=gate))
    key = [("idempotency-key", "stream-2")]

    async def scenario():
        first = asgi_completion({"stream": True}, headers=key)
        await first.got_body.wait()
        second = asgi_completion({"stream": True}, headers=key)
        await second.task
        gate.set()
        await first.task
        return first, second

    first, second = async_to_sync(scenario)()
    assert second.status == 409 and second.json()["error"] == "idempotency_key_in_progress"
    assert second.headers["retry-after"] == "1"
    assert parse_sse(first.raw)[-1][1]["content"] == "slow answer"
    assert len(fake_ai.to("openai")) == 1


def test_a_stream_that_failed_leaves_its_key_free_for_a_retry(fake_ai, complete):
    fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["partial"], error_after=1)))
    fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["whole answer"])))
    failed = _read(complete(task="writing", stream=True, headers={"Idempotency-Key": "stream-3"}))
    assert failed[-1][0] == "error"
    retried = _read(complete(task="writing", stream=True, headers={"Idempotency-Key": "stream-3"}))
    assert retried[-1] == ("done", retried[-1][1]) and retried[-1][1]["content"] == "whole answer"
    assert len(fake_ai.to("anthropic")) == 2


def test_a_stream_failing_mid_way_is_logged_with_its_provider(fake_ai, complete, caplog):
    fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["partial"], error_after=1)))
    with caplog.at_level("WARNING", logger="ai.services"):
        events = _read(complete(task="writing", stream=True))
    assert events[-1][1]["provider"] == "anthropic"
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.provider, logged.model) == ("failed", "anthropic", "claude-sonnet-4-6")
    record = next(r for r in caplog.records if r.name == "ai.services")
    assert record.provider == "anthropic" and "anthropic" in record.getMessage()


def test_a_wsgi_server_gets_the_whole_stream_at_once_not_a_broken_one(fake_ai, user_client):
    """Under WSGI (manage.py runserver, gunicorn sync workers) Django iterates a response only after the view's
    event loop has ended, in a new one where the provider's open stream no longer works; the view collects
    the events while its loop runs instead. Django's test client is a WSGI handler."""
    fake_ai.add("openai", sse_response(openai_sse_chunks(["Hel", "lo"], usage=(10, 2, 0))))
    fake_ai.add("openai", sse_response(openai_sse_chunks(["Hi"], usage=(10, 1, 0))))
    body = {"messages": [{"role": "user", "content": "Say hello"}], "stream": True}

    resp = user_client.post("/api/v1/ai/completions/", body, format="json")
    again = user_client.post("/api/v1/ai/completions/", body | {"temperature": 0.5}, format="json")

    assert resp.status_code == 200 and resp["Content-Type"] == "text/event-stream"
    events = parse_sse(b"".join(resp))  # as a WSGI server iterates it
    assert [kind for kind, _ in events] == ["delta", "delta", "done"]
    assert events[2][1]["content"] == "Hello"
    assert [kind for kind, _ in parse_sse(b"".join(again))] == ["delta", "done"]
    assert list(ProviderCall.objects.values_list("outcome", flat=True)) == ["ok", "ok"]
    assert AiRequest.objects.filter(stream=True).count() == 2


class _Noted(asyncio.Event):
    """A Body's gate that tells when the stream reached it: everything before was read and handled."""

    def __init__(self):
        super().__init__()
        self.reached = asyncio.Event()

    async def wait(self):
        self.reached.set()
        return await super().wait()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "provider, task, chunks, held_after, input_tokens, cached_tokens, cost",
    [
        # The hub's estimate (OpenAI tells the usage at the end only); gpt-4o-mini: 10,000 x 0.15 / 1M.
        ("openai", "simple", openai_sse_chunks(["late"], usage=(99, 5, 0)), 1, 10_000, 0, "0.001500"),
        # What Anthropic's message_start counted (10,000 + 30,000 read from its cache), not the estimate;
        # claude-sonnet-4-6: (10,000 x 3.00 + 30,000 x 0.30) / 1M.
        ("anthropic", "writing", anthropic_sse_chunks(["late"], usage=(10_000, 5, 30_000)), 2, 40_000, 30_000, "0.039"),
    ],
    ids=["openai-estimated", "anthropic-counted"],
)
def test_a_client_gone_before_the_first_delta_is_booked_the_input_it_sent(
    fake_ai, asgi_completion, user, provider, task, chunks, held_after, input_tokens, cached_tokens, cost
):
    """The stream opened (the provider answered 200 and, for Anthropic, counted the input) and the client left
    before any text: booked as a stream the client left after some deltas is, not at $0."""
    from ai.models import AiSpend, AiUsageMonthly

    upstream = sse_response(chunks, hold_after=held_after, gate=None)
    prompt = "x" * 39_965  # the messages' JSON and the tools' ([]) are 40,000 characters: 10,000 tokens by estimate

    async def scenario():
        upstream.body_stream.gate = gate = _Noted()  # never set: the provider is still "thinking"
        fake_ai.add(provider, upstream)
        call = asgi_completion(
            {"stream": True, "task": task, "messages": [{"role": "user", "content": prompt}]},
            headers=[("idempotency-key", "s1")],
        )
        await asyncio.wait_for(gate.reached.wait(), 10)
        call.disconnect()
        await call.task
        await aio.settle(timeout=10)
        assert call.chunks == []

    async_to_sync(scenario)()
    cost = Decimal(cost)
    assert upstream.body_stream.closed
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.finish_reason, logged.provider, logged.stream) == (
        "client_closed",
        "client_closed",
        provider,
        True,
    )
    assert (logged.input_tokens, logged.cached_tokens, logged.output_tokens, logged.cost_usd) == (
        input_tokens,
        cached_tokens,
        0,
        cost,
    )
    call = ProviderCall.objects.get()
    assert (call.outcome, call.cost_usd, call.units["input_tokens"]) == ("cancelled", cost, input_tokens)
    month = AiUsageMonthly.objects.get(owner=user)
    assert (month.requests, month.input_tokens, month.cost_usd) == (1, input_tokens, cost)
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (cost, 0)
    assert not IdempotencyRecord.objects.filter(key="s1").exists()


def _anthropic_failing_after_message_start(input_tokens):
    """message_start (Anthropic counts the input it bills), a text block's start, then an error event: no text."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    started = anthropic_sse_chunks([], usage=(input_tokens, 5, 0))[:2]
    return started + [f"event: error\ndata: {json.dumps(overloaded)}\n\n".encode()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "headers", [[], [("idempotency-key", "f1")]], ids=["booked-in-one-round-trip", "booked-step-by-step"]
)
def test_an_anthropic_stream_failing_after_message_start_is_booked_its_input_with_the_answer_that_followed(
    fake_ai, asgi_completion, user, server_loop, headers
):
    """Anthropic counted (and bills) the input in message_start, then failed before any text: the walk falls back
    as before, and the request is booked that input as well as the answer the next provider gave."""
    from ai.models import AiSpend, AiUsageMonthly

    fake_ai.add("anthropic", sse_response(_anthropic_failing_after_message_start(10_000)))
    fake_ai.add("openai", sse_response(openai_sse_chunks(["fine"], usage=(1000, 3, 0), model="gpt-4.1")))

    async def scenario():
        server_loop()
        call = asgi_completion({"stream": True, "task": "writing"}, headers=headers)
        await call.task
        await aio.settle(timeout=10)
        return call

    events = parse_sse(async_to_sync(scenario)().raw)
    kind, done = events[-1]
    assert (kind, done["provider"], done["content"]) == ("done", "openai", "fine")
    assert [(f["provider"], f["error"]) for f in done["fallbacks"]] == [("anthropic", "provider_unavailable")]
    # claude-sonnet-4-6: 10,000 x 3.00 / 1M; gpt-4.1: (1000 x 2.00 + 3 x 8.00) / 1M
    lost, answered = Decimal("0.030000"), Decimal("0.002024")
    assert done["cost_usd"] == str(answered)  # the answer's own usage and cost
    calls = {c.provider: c for c in ProviderCall.objects.all()}
    assert (calls["anthropic"].outcome, calls["anthropic"].cost_usd) == ("error", lost)
    assert calls["anthropic"].units["input_tokens"] == 10_000
    assert (calls["openai"].outcome, calls["openai"].cost_usd) == ("ok", answered)
    by_model = {m.provider: m for m in AiUsageMonthly.objects.filter(owner=user)}
    assert (by_model["anthropic"].input_tokens, by_model["anthropic"].cost_usd) == (10_000, lost)
    assert by_model["openai"].cost_usd == answered
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.provider, logged.cost_usd) == ("ok", "openai", lost + answered)
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (lost + answered, 0)


def test_an_anthropic_stream_failing_after_message_start_with_no_fallback_is_booked_its_input(
    fake_ai, complete, user, settings
):
    from ai.models import AiSpend, AiUsageMonthly

    settings.AI_ROUTES = {"writing": [["anthropic", "claude-sonnet-4-6"]]}
    fake_ai.add("anthropic", sse_response(_anthropic_failing_after_message_start(10_000)))
    resp = complete(task="writing", stream=True)
    assert resp.status_code == 503 and resp.json()["error"] == "ai_unavailable"
    lost = Decimal("0.030000")  # claude-sonnet-4-6: 10,000 x 3.00 / 1M
    call = ProviderCall.objects.get()
    assert (call.outcome, call.cost_usd, call.units["input_tokens"]) == ("error", lost, 10_000)
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.error_code, logged.cost_usd) == ("failed", "ai_unavailable", lost)
    month = AiUsageMonthly.objects.get(owner=user)
    assert (month.provider, month.input_tokens, month.output_tokens, month.cost_usd) == ("anthropic", 10_000, 0, lost)
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (lost, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("room", ["enough", "too_little"])
def test_a_fallback_after_a_billed_failure_is_asked_only_if_the_budget_holds_both(
    fake_ai, asgi_completion, user, server_loop, settings, room
):
    """The hold covers one answer at its largest. Anthropic billed the prompt (message_start) and failed: the
    next provider is asked only when the budget has room for that bill and another answer at its largest;
    otherwise the walk stops with 402 `budget_exceeded`, booked the bill alone, and the month stays within the
    budget (before, the fallback answered and the month passed it)."""
    from ai.models import AiSpend

    settings.AI_ROUTES = {**settings.AI_ROUTES, "writing": [["anthropic", "claude-sonnet-4-6"], ["openai", "gpt-4.1"]]}
    # The hold: claude-sonnet-4-6's 1000 output tokens at $15 / 1M, $0.015, plus the prompt's estimate (a few
    # tokens). Anthropic bills 2,000 input tokens ($0.006); gpt-4.1's answer costs (1000 x 2 + 1000 x 8) / 1M.
    settings.AI_USER_MONTHLY_BUDGET_USD = "0.0300" if room == "enough" else "0.0155"
    fake_ai.add("anthropic", sse_response(_anthropic_failing_after_message_start(2_000)))
    fake_ai.add("openai", sse_response(openai_sse_chunks(["fine"], usage=(1000, 1000, 0), model="gpt-4.1")))

    async def scenario():
        server_loop()
        call = asgi_completion({"stream": True, "task": "writing", "max_tokens": 1000})
        await call.task
        await aio.settle(timeout=10)
        return call

    call = async_to_sync(scenario)()
    billed, answered = Decimal("0.006000"), Decimal("0.010000")
    spend = AiSpend.objects.get(owner=user)
    logged = AiRequest.objects.get()
    if room == "enough":
        kind, done = parse_sse(call.raw)[-1]
        assert (kind, done["provider"]) == ("done", "openai")
        assert (spend.spent_usd, spend.reserved_usd) == (billed + answered, 0)
        assert (logged.outcome, logged.cost_usd) == ("ok", billed + answered)
        return
    assert call.status == 402
    body = call.json()
    assert body["error"] == "budget_exceeded"
    assert [(t["provider"], t["error"]) for t in body["tried"]] == [("anthropic", "provider_unavailable")]
    assert fake_ai.to("openai") == []  # never asked
    assert (spend.spent_usd, spend.reserved_usd) == (billed, 0)
    assert spend.spent_usd <= Decimal(settings.AI_USER_MONTHLY_BUDGET_USD)
    assert (logged.outcome, logged.error_code, logged.cost_usd) == ("failed", "budget_exceeded", billed)
    assert ProviderCall.objects.get().provider == "anthropic"
