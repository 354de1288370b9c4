"""The AI endpoints are async end to end: a long stream holds a coroutine, not a worker.

These drive config.asgi.application as an ASGI server would (tests/ai/conftest.AsgiCall),
with provider streams the test holds open and releases itself, so nothing here depends
on timing.
"""

import asyncio
import json
import logging
import threading
import time

import httpx2
import pytest
from asgiref.sync import async_to_sync, sync_to_async

from ai.models import AiRequest, AiSpend
from ai.services.booking import Booking
from integrations import aio
from integrations.models import ProviderCall
from tests.ai.conftest import AsgiCall, auth_headers
from tests.ai.fakes import (
    anthropic_message,
    anthropic_sse_chunks,
    openai_chat,
    openai_sse_chunks,
    parse_sse,
    sse_response,
)

# The ASGI handler sends request_started/finished, which close a connection
# inside a test transaction: these tests run outside one.
pytestmark = pytest.mark.django_db(transaction=True)


def test_health_and_api_reads_answer_while_streams_are_held_open(fake_ai, asgi_completion, user_client):
    gate = asyncio.Event()
    upstreams = [sse_response(openai_sse_chunks(["a", "b", "c"]), hold_after=2, gate=gate) for _ in range(3)]
    fake_ai.add("openai", *upstreams)
    token = auth_headers(user_client)["Authorization"]

    async def scenario():
        streams = [asgi_completion({"stream": True}) for _ in upstreams]
        await asyncio.gather(*(s.got_body.wait() for s in streams))
        # Three streams are open and their provider is silent: the same process still answers.
        health = AsgiCall("GET", "/healthz").start()
        usage = AsgiCall("GET", "/api/v1/ai/usage/", headers=[("authorization", token)]).start()
        await asyncio.gather(health.task, usage.task)
        assert not any(s.finished.is_set() for s in streams)
        gate.set()
        await asyncio.gather(*(s.task for s in streams))
        return streams, health, usage

    streams, health, usage = async_to_sync(scenario)()
    assert (health.status, usage.status) == (200, 200)
    assert usage.json()["requests"] == 0  # read while the three were still streaming
    for s in streams:
        events = parse_sse(s.raw)
        assert events[-1][0] == "done" and events[-1][1]["content"] == "abc"
    assert ProviderCall.objects.filter(outcome="ok").count() == 3


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_no_callback_blocks_the_event_loop_for_100_ms(fake_ai, asgi_completion, monkeypatch):
    """asyncio's debug mode logs every callback that holds the loop longer than
    slow_callback_duration; a sync database, Redis or SDK call on the loop, or
    a time.sleep, would show up here (and time.sleep is refused outright)."""
    fake_ai.add("openai", openai_chat("warm"))  # the first request imports lazily-loaded SDK modules
    answers = {False: openai_chat("plain"), True: sse_response(openai_sse_chunks(["str", "eamed"]))}

    def answer(request):
        # The two requests run at once: whichever reaches the provider first gets the answer it asked for.
        return answers[json.loads(request.content).get("stream", False)]

    fake_ai.add("openai", answer, answer)
    loop_threads = set()
    real_sleep = time.sleep

    def sleep(seconds):
        assert threading.get_ident() not in loop_threads, "time.sleep on the event loop"
        real_sleep(seconds)

    async def scenario():
        loop = asyncio.get_running_loop()
        await asgi_completion({}).task
        loop_threads.add(threading.get_ident())
        monkeypatch.setattr(time, "sleep", sleep)
        loop.set_debug(True)
        loop.slow_callback_duration = 0.1
        plain = asgi_completion({})
        streamed = asgi_completion({"stream": True})
        await asyncio.gather(plain.task, streamed.task)
        loop.set_debug(False)
        return plain, streamed

    slow_log = _Collect()
    logging.getLogger("asyncio").addHandler(slow_log)
    try:
        plain, streamed = async_to_sync(scenario)()
    finally:
        logging.getLogger("asyncio").removeHandler(slow_log)
    assert plain.json()["content"] == "plain"
    assert parse_sse(streamed.raw)[-1][1]["content"] == "streamed"
    assert [m for m in slow_log.messages if "took" in m] == []


def test_a_provider_that_does_not_answer_in_time_falls_through(fake_ai, complete, settings):
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "openai": {"web": 0.2, "task": 1.0}}

    async def silent(request):
        await asyncio.Event().wait()  # never answers; only the hub's own deadline ends this

    fake_ai.add("openai", silent)
    fake_ai.add("anthropic", anthropic_message("in time"))
    body = complete().json()
    assert (body["provider"], body["fallbacks"][0]["error"]) == ("anthropic", "provider_timeout")
    assert ProviderCall.objects.get(provider="openai").outcome == "timeout"


def test_a_stream_whose_first_delta_misses_the_deadline_falls_through(fake_ai, complete, settings):
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "openai": {"web": 0.2, "task": 1.0}}
    fake_ai.add("openai", sse_response(openai_sse_chunks(["late"]), hold_after=0, gate=asyncio.Event()))
    fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["on time"])))
    events = parse_sse(complete(stream=True).raw)
    done = events[-1][1]
    assert (done["provider"], done["content"]) == ("anthropic", "on time")
    assert done["fallbacks"][0]["error"] == "provider_timeout"


def test_a_rate_token_due_before_the_deadline_is_awaited_not_refused(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    # One request per 0.2 s, no burst: the second request's token is 0.2 s away.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "openai": {"requests": {"rate": 5, "burst": 1}}}
    fake_ai.add("openai", openai_chat("first"), openai_chat("second"))
    assert complete().json()["content"] == "first"
    second = complete()
    assert second.status_code == 200 and second.json()["content"] == "second"
    assert ProviderCall.objects.filter(outcome="rate_limited").count() == 0


def test_a_rate_token_beyond_the_wait_limit_moves_on_to_the_next_provider(fake_ai, complete, settings):
    settings.AI_RETRY_WAIT_MAX_SECONDS = 0.5
    # One request per 10 s: the second openai token is far beyond what a request may wait.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "openai": {"requests": {"rate": 0.1, "burst": 1}}}
    fake_ai.add("openai", openai_chat("first"))
    fake_ai.add("anthropic", anthropic_message("next provider"))
    assert complete().json()["provider"] == "openai"
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert body["fallbacks"][0]["error"] == "rate_limited_outbound"


def test_with_every_token_beyond_the_wait_limit_the_client_gets_503_and_retry_after(fake_ai, complete, settings):
    settings.AI_RETRY_WAIT_MAX_SECONDS = 0.5
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "openai": {"requests": {"rate": 0.1, "burst": 1}}}
    fake_ai.add("openai", openai_chat("first"))
    complete()
    resp = complete()
    assert resp.status_code == 503
    assert resp.json()["error"] == "ai_unavailable"
    assert 5 <= int(resp["Retry-After"]) <= 10


@pytest.mark.parametrize("stream", [False, True])
def test_on_the_servers_loop_the_answer_is_sent_before_its_booking_is_written(
    fake_ai, asgi_completion, server_loop, monkeypatch, stream
):
    fake_ai.add("openai", sse_response(openai_sse_chunks(["hel", "lo"])) if stream else openai_chat("hello"))
    gate = threading.Event()

    def held(booking):
        def wait_then(self, *args, **kwargs):
            assert gate.wait(10), "the test never released the booking"
            return booking(self, *args, **kwargs)

        return wait_then

    # The booking's two forms: step by step (a stream's), and as statements for the row's round trip.
    monkeypatch.setattr(Booking, "answered", held(Booking.answered))
    monkeypatch.setattr(Booking, "answered_at_once", held(Booking.answered_at_once))
    count = sync_to_async(lambda: (AiRequest.objects.count(), ProviderCall.objects.count()), thread_sensitive=False)

    async def scenario():
        server_loop()
        call = asgi_completion({"stream": stream})
        await asyncio.wait_for(call.finished.wait(), 5)  # the whole answer is out while its booking waits
        before = await count()
        gate.set()
        await call.task
        left = await aio.settle(timeout=10)
        return call, before, left, await count()

    call, before, left, after = async_to_sync(scenario)()
    answer = parse_sse(call.raw)[-1][1] if stream else call.json()
    assert call.status == 200 and answer["content"] == "hello"
    assert before == (0, 0)
    assert left == 0 and after == (1, 1)


def _refused_by_the_database(self, *args, **kwargs):
    return [("UPDATE ai_table_that_is_gone SET n = 1", [])], None


def _not_built(self, *args, **kwargs):
    raise ValueError("a statement could not be built")


def _answered_then_booked(asgi_completion, server_loop, caplog):
    """One completion on the server's loop, its background booking awaited; the booking's errors in caplog."""

    async def scenario():
        server_loop()
        call = asgi_completion({})
        await call.task
        await aio.settle(timeout=10)
        return call

    with caplog.at_level(logging.ERROR, logger="integrations.aio"):
        return async_to_sync(scenario)()


@pytest.mark.parametrize("at_once", [_refused_by_the_database, _not_built])
def test_a_booking_that_fails_after_the_answer_frees_the_budget_hold_and_is_logged(
    fake_ai, asgi_completion, server_loop, monkeypatch, caplog, at_once
):
    fake_ai.add("openai", openai_chat("hello"))

    def broken(self, *args, **kwargs):
        raise RuntimeError("roll-up table is gone")

    # The one-round-trip booking fails (nothing of it is written), then so does the step by step.
    monkeypatch.setattr(Booking, "answered_at_once", at_once)
    monkeypatch.setattr(Booking, "answered", broken)

    call = _answered_then_booked(asgi_completion, server_loop, caplog)
    assert call.status == 200
    assert ProviderCall.objects.count() == 1  # the provider was called: its row stays
    assert AiRequest.objects.count() == 0
    assert [str(row.reserved_usd) for row in AiSpend.objects.all()] == ["0.000000"]
    assert "roll-up table is gone" in caplog.text


def test_a_booking_that_fails_after_settling_the_budget_still_frees_the_hold(
    fake_ai, asgi_completion, server_loop, monkeypatch, caplog
):
    # Step by step, the settlement is written and then the request log fails: the savepoint undoes the
    # settlement, so the hold must still be there for abandon() to free.
    fake_ai.add("openai", openai_chat("hello"))
    monkeypatch.setattr(Booking, "answered_at_once", _not_built)

    def broken(**fields):
        raise RuntimeError("request log table is gone")

    monkeypatch.setattr("ai.services.booking.request_log", broken)

    call = _answered_then_booked(asgi_completion, server_loop, caplog)
    assert call.status == 200
    assert AiRequest.objects.count() == 0
    assert [(str(row.reserved_usd), str(row.spent_usd)) for row in AiSpend.objects.all()] == [("0.000000", "0.000000")]
    assert "request log table is gone" in caplog.text


@pytest.mark.postgres  # one query string of several statements (integrations.aio.at_once) is PostgreSQL's
@pytest.mark.parametrize("stream, log_prompts", [(False, False), (True, False), (False, True)])
def test_an_answers_booking_is_one_round_trip_that_writes_it_all(
    fake_ai, asgi_completion, server_loop, monkeypatch, settings, stream, log_prompts
):
    from ai.models import AiUsageMonthly
    from integrations.gateway import asynchronous, bookings

    settings.AI_LOG_PROMPTS = log_prompts

    usage = (1000, 100, 0)
    fake_ai.add(
        "openai",
        sse_response(openai_sse_chunks(["hel", "lo"], usage=usage)) if stream else openai_chat("hello", usage=usage),
    )
    sent = []

    def counted(statements):
        sent.append(len(statements))
        return aio.at_once(statements)

    monkeypatch.setattr(asynchronous, "at_once", counted)  # on its own
    monkeypatch.setattr(bookings, "at_once", counted)  # in the worker's batch (gateway.bookings)

    async def scenario():
        server_loop()
        call = asgi_completion({"stream": stream})
        await call.task
        await aio.settle(timeout=10)
        return call

    call = async_to_sync(scenario)()
    assert call.status == 200
    answer = parse_sse(call.raw)[-1][1] if stream else call.json()
    assert answer["content"] == "hello"
    cost = answer["cost_usd"]
    # The owner's lock and erasure check (integrations.erasing), the call row with its roll-ups, the month's usage,
    # the request log, the budget's settlement.
    assert sent == [1 + 4]
    row = ProviderCall.objects.get()
    assert (row.outcome, str(row.cost_usd), row.units["input_tokens"]) == ("ok", cost, 1000)
    logged = AiRequest.objects.get()
    assert (logged.outcome, logged.input_tokens, logged.output_tokens, str(logged.cost_usd)) == ("ok", 1000, 100, cost)
    assert (logged.stream, logged.fallbacks, logged.created_at is not None) == (stream, [], True)
    if log_prompts:  # JSON and text columns through the same statement
        assert logged.prompt["messages"][0]["content"] == "Say hello" and logged.response_text == "hello"
    else:
        assert logged.prompt is None and logged.response_text == ""
    usage = AiUsageMonthly.objects.get()
    assert (usage.requests, usage.input_tokens, str(usage.cost_usd)) == (1, 1000, cost)
    spend = AiSpend.objects.get()
    assert (str(spend.spent_usd), str(spend.reserved_usd)) == (cost, "0.000000")


def test_the_lifespan_shutdown_waits_for_bookings_still_being_written(server_loop):
    from config.asgi import application

    written = threading.Event()

    def booking():
        time.sleep(0.3)  # still running when the shutdown message arrives
        written.set()

    async def scenario():
        server_loop()
        await aio.in_background(booking)
        messages = iter([{"type": "lifespan.shutdown"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append((message["type"], written.is_set()))

        await application({"type": "lifespan"}, receive, send)
        return sent

    assert async_to_sync(scenario)() == [("lifespan.shutdown.complete", True)]


def _thinking_for(seconds, answer):
    """A provider that needs `seconds` before it answers: a client whose read timeout is shorter gives up first."""

    def respond(request):
        if request.extensions["timeout"]["read"] < seconds:
            raise httpx2.ReadTimeout("read timed out", request=request)
        return answer

    return respond


@pytest.mark.parametrize(
    "provider,model",
    [
        ("gemini", "gemini-2.5-pro"),
        ("xai", "grok-4"),
        ("openrouter", "deepseek/deepseek-r1"),
        ("github_models", "openai/gpt-4.1"),
    ],
)
def test_an_openai_compatible_provider_gets_as_long_as_openai_to_answer(fake_ai, complete, settings, provider, model):
    # Reasoning models on the writing and reasoning routes think for tens of seconds before answering; a
    # web-tier timeout meant for a quick REST call would give up on them (billed, yet unanswered) and fall through.
    settings.AI_DEADLINE_SECONDS = 90.0
    fake_ai.add("openai", _thinking_for(20, openai_chat("from openai")))
    assert complete(model="gpt-4.1", provider="openai").json()["content"] == "from openai"
    fake_ai.add(provider, _thinking_for(20, openai_chat("thought it through", model=model)))
    resp = complete(model=model, provider=provider)
    assert resp.status_code == 200, resp.json()
    assert (resp.json()["provider"], resp.json()["content"]) == (provider, "thought it through")
