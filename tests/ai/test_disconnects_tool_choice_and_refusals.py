"""A client gone during the hold hop leaves nothing held; tool_choice names by string; SSE success is `done`; a refusing account is asked once."""

import asyncio
import threading
import time

import httpx2
import pytest
from asgiref.sync import async_to_sync

from ai import services as ai_services
from ai.models import AiSpend
from integrations import aio
from integrations.models import IdempotencyRecord
from tests.ai.fakes import anthropic_message, error, openai_chat


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("on_server_loop", [False, True], ids=["shared-thread", "hop-threads"])
def test_a_client_gone_during_the_hold_hop_leaves_no_hold_and_no_stuck_idempotency_key(
    fake_ai, asgi_completion, monkeypatch, server_loop, on_server_loop
):
    """The client disconnects while the view's one thread hop (auth, Idempotency-Key claim, budget hold) runs.

    Django cancels the request's task; the hop's thread still finishes and takes the hold and the key."""
    taken = threading.Event()
    real_begin = ai_services.begin

    def slow_begin(*args, **kwargs):
        begun = real_begin(*args, **kwargs)  # the hold (and, before it, the key's claim) are committed
        taken.set()
        time.sleep(0.3)  # the rest of a hop that is slow under load (row lock on AiSpend, a busy pool)
        return begun

    monkeypatch.setattr(ai_services, "begin", slow_begin)
    key = [("idempotency-key", "gone-1")]

    async def scenario():
        if on_server_loop:
            server_loop()  # as under the production server: hops on DB_HOP_THREADS threads of their own
        call = asgi_completion({}, headers=key)
        while not taken.is_set():
            await asyncio.sleep(0.005)
        call.disconnect()  # the client went away (a mobile network drop, a client-side timeout)
        await call.task
        await asyncio.sleep(0.5)  # the hop's thread has long finished

    async_to_sync(scenario)()
    assert fake_ai.sent == []  # no provider was called: nothing may stay held
    assert [str(row.reserved_usd) for row in AiSpend.objects.all()] == ["0.000000"]
    # The client's retry with the same key must not get 409 "still being processed" for the next 24 h.
    assert not IdempotencyRecord.objects.filter(key="gone-1").exists()


@pytest.mark.django_db(transaction=True)
def test_a_client_gone_during_a_cacheable_requests_hold_hop_leaves_no_hold(fake_ai, asgi_completion, monkeypatch):
    """A cacheable request (temperature 0) takes its hold in a hop of its own after the cache missed."""
    from ai.services.booking import Booking

    taken = threading.Event()
    real_reserve = Booking.reserve

    def slow_reserve(self, chain):
        held = real_reserve(self, chain)
        taken.set()
        time.sleep(0.3)
        return held

    monkeypatch.setattr(Booking, "reserve", slow_reserve)

    async def scenario():
        call = asgi_completion({"temperature": 0})
        while not taken.is_set():
            await asyncio.sleep(0.005)
        call.disconnect()
        await call.task
        await asyncio.sleep(0.5)

    async_to_sync(scenario)()
    assert fake_ai.sent == []
    assert [str(row.reserved_usd) for row in AiSpend.objects.all()] == ["0.000000"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tool_choice",
    [
        {"name": ["lookup"]},
        {"type": "tool", "name": {"tool": "lookup"}},
        {"type": "function", "function": {"name": ["lookup"]}},
    ],
    ids=["list-name", "object-name", "openai-list-name"],
)
def test_a_tool_choice_naming_a_tool_with_a_non_string_is_a_json_400_not_a_500(fake_ai, complete, tool_choice):
    resp = complete(tools=[{"name": "lookup", "input_schema": {"type": "object"}}], tool_choice=tool_choice)
    assert resp.status_code == 400, resp.content[:300]
    assert resp.json()["error"] == "invalid"
    assert fake_ai.sent == []


@pytest.mark.django_db
def test_a_non_streamed_answer_asked_with_accept_event_stream_is_not_rendered_as_an_error_event(fake_ai, complete):
    fake_ai.add("openai", openai_chat("hello"))
    resp = complete(headers={"Accept": "text/event-stream"})
    assert resp.status_code == 200
    assert b"event: error" not in resp.content, resp.content[:200]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "refusal",
    [
        lambda: error(429, "You exceeded your current quota", code="insufficient_quota"),
        lambda: error(401, "Incorrect API key provided", code="invalid_api_key"),
    ],
    ids=["quota", "bad-key"],
)
def test_a_provider_out_of_quota_or_refusing_its_key_is_not_tried_again_for_another_model(
    fake_ai, complete, settings, refusal
):
    # A route with a cheaper model of the same provider as its second entry.
    settings.AI_ROUTES = {
        "simple": [["openai", "gpt-4.1"], ["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"]]
    }
    fake_ai.add("openai", refusal(), openai_chat("should not be asked"))
    fake_ai.add("anthropic", anthropic_message("ok"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert len(fake_ai.to("openai")) == 1  # the account is out of credit / the key is refused: for every model
    fake_ai.queues["openai"].clear()


@pytest.mark.django_db
def test_openrouter_out_of_credits_402_falls_through_and_is_not_asked_again(fake_ai, complete, settings):
    # OpenRouter answers an account without credit 402 with a numeric code in its error body.
    settings.AI_ROUTES = {
        "simple": [
            ["openrouter", "meta-llama/llama-3.3-70b-instruct"],
            ["openrouter", "deepseek/deepseek-r1"],
            ["anthropic", "claude-haiku-4-5"],
        ]
    }
    out_of_credit = httpx2.Response(
        402,
        json={"error": {"code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai/credits"}},
    )
    fake_ai.add("openrouter", out_of_credit, openai_chat("should not be asked"))
    fake_ai.add("anthropic", anthropic_message("ok"))
    resp = complete()
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["provider"] == "anthropic"
    assert [(f["provider"], f["error"], f["http_status"]) for f in body["fallbacks"]] == [
        ("openrouter", "provider_quota_exceeded", 402)
    ]
    assert len(fake_ai.to("openrouter")) == 1  # out of credit for every model
    fake_ai.queues["openrouter"].clear()


@pytest.mark.django_db(transaction=True)
def test_a_client_gone_while_the_provider_thinks_is_no_provider_failure(fake_ai, asgi_completion, settings):
    """The client leaves before the answer: the attempt is cancelled, which says nothing about the provider."""
    from django.utils import timezone

    from integrations.alerting.thresholds import call_rates, thresholds_evaluate
    from integrations.models import Alert, ProviderCall, ProviderRollup, UsageRollup
    from tests.ai.fakes import Body

    settings.ALERT_MIN_CALLS = 1  # one failed call in the window would be a critical alert
    state = {}

    def thinking(request):
        body = Body([openai_chat("late").content], hold_after=0, gate=state["gate"])
        state["asked"].set()
        return httpx2.Response(200, stream=body, headers={"content-type": "application/json"})

    fake_ai.add("openai", thinking)

    async def scenario():
        state["gate"], state["asked"] = asyncio.Event(), asyncio.Event()
        call = asgi_completion({})
        await asyncio.wait_for(state["asked"].wait(), 10)
        call.disconnect()
        await call.task
        await asyncio.sleep(0.3)  # the attempt's row is written in a hop of its own

    async_to_sync(scenario)()
    row = ProviderCall.objects.get(provider="openai")
    assert row.outcome == ProviderCall.Outcome.CANCELLED
    thresholds_evaluate(now=timezone.now(), checks=[call_rates])
    assert not Alert.objects.filter(kind=Alert.Kind.PROVIDER_FAILURE_RATE).exists()
    assert UsageRollup.objects.get(provider="openai").errors == 0
    rollup = ProviderRollup.objects.get(provider="openai")
    assert (rollup.calls, rollup.error, rollup.cancelled) == (1, 0, 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("on_server_loop", [False, True], ids=["booked-inline", "booked-after"])
def test_a_client_gone_while_the_provider_thinks_is_booked_the_input_it_sent(
    fake_ai, asgi_completion, user, server_loop, on_server_loop
):
    """The request reached the provider, which bills its input though nobody reads the answer: booked as a
    stream the client left is (the hub's estimate of the input, no answer), on the request log, the call row,
    the usage page and the budget; the Idempotency-Key is freed, since the client got nothing to replay."""
    from decimal import Decimal

    from ai.models import AiRequest, AiUsageMonthly
    from integrations.models import ProviderCall
    from tests.ai.fakes import Body

    state = {}

    def thinking(request):
        body = Body([openai_chat("late").content], hold_after=0, gate=state["gate"])
        state["asked"].set()
        return httpx2.Response(200, stream=body, headers={"content-type": "application/json"})

    fake_ai.add("openai", thinking)
    prompt = "x" * 39_965  # the messages' JSON and the tools' ([]) are 40,000 characters: 10,000 tokens by estimate

    async def scenario():
        if on_server_loop:
            server_loop()
        state["gate"], state["asked"] = asyncio.Event(), asyncio.Event()
        call = asgi_completion({"messages": [{"role": "user", "content": prompt}]}, headers=[("idempotency-key", "k1")])
        await asyncio.wait_for(state["asked"].wait(), 10)
        call.disconnect()
        await call.task
        await aio.settle(timeout=10)

    async_to_sync(scenario)()
    cost = Decimal("0.001500")  # gpt-4o-mini: 10,000 x 0.15 / 1M
    row = ProviderCall.objects.get(provider="openai")
    assert (row.outcome, row.cost_usd, row.units.get("input_tokens")) == ("cancelled", cost, 10_000)
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.finish_reason, logged.provider, logged.model) == (
        "client_closed",
        "client_closed",
        "openai",
        "gpt-4o-mini",
    )
    assert (logged.input_tokens, logged.output_tokens, logged.cost_usd) == (10_000, 0, cost)
    month = AiUsageMonthly.objects.get(owner=user)
    assert (month.requests, month.input_tokens, month.output_tokens, month.cost_usd) == (1, 10_000, 0, cost)
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (cost, 0)
    assert not IdempotencyRecord.objects.filter(key="k1").exists()
