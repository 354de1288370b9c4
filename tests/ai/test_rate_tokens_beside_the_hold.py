"""A completion takes its first provider's rate tokens while its budget hold runs, and only once.

The limiter's round trip to Redis is sent before the hold's to PostgreSQL and read after it (Booking.reserve), and
the first attempt uses what it took. A request that then calls no provider (refused by its budget, its deadline
gone before the first attempt, its client gone during the hold) gives the tokens back: refusals do not spend the
provider's rate. Each test gives openai one request a minute or less (and a small tokens-per-minute bucket where
it says), so a token spent twice, or not given back, sends the next completion to anthropic instead.
"""

import asyncio
import threading
import time
from decimal import Decimal

import pytest
import redis.asyncio
import redis.connection
from asgiref.sync import async_to_sync
from django.db import connection

from ai import services as ai_services
from ai.models import AiBudget
from ai.usage import usage_record
from tests.ai.fakes import anthropic_message, openai_chat, openai_sse_chunks, parse_sse, sse_response

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


@pytest.fixture
def one_openai_request(settings):
    """openai: one request (no refill within a test) and 2000 tokens per minute; anthropic: unlimited."""
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "openai": {"requests": {"rate": 0.001, "burst": 1}, "tokens": {"rate": 0.001, "burst": 2000}},
        "anthropic": {},
    }


def _answers_from(fake_ai, complete, **body):
    fake_ai.add("openai", openai_chat("from openai"))
    fake_ai.add("anthropic", anthropic_message("from anthropic"))
    resp = complete(**body)
    assert resp.status_code == 200, resp.content
    return resp.json()["provider"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_first_providers_tokens_go_out_before_the_hold_and_the_attempt_uses_them(
    fake_ai, complete, one_openai_request, monkeypatch, stream
):
    order = []
    real_send = redis.connection.AbstractConnection.send_packed_command
    real_async_execute = redis.asyncio.Redis.execute_command

    def send(self, command, check_health=True):
        blob = b"".join(command) if isinstance(command, (list, tuple)) else bytes(command)
        if b"EVALSHA" in blob and b"openai" in blob:
            order.append("tokens")
        return real_send(self, command, check_health)

    async def async_execute(self, *args, **options):
        if args[0] in ("EVALSHA", "EVAL"):
            order.append("tokens (after the hold)")
        return await real_async_execute(self, *args, **options)

    def statement(execute, sql, params, many, context):
        if "UPDATE" in sql and "ai_aispend" in sql and "reserved_usd" in sql:
            order.append("hold")
        return execute(sql, params, many, context)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send)
    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", async_execute)
    if stream:
        fake_ai.add("openai", sse_response(openai_sse_chunks(["hel", "lo"])))
        with connection.execute_wrapper(statement):
            events = parse_sse(complete(stream=True).raw)
        assert events[-1][1]["provider"] == "openai"
    else:
        fake_ai.add("openai", openai_chat("hello"))
        with connection.execute_wrapper(statement):
            resp = complete()
        assert resp.status_code == 200 and resp.json()["provider"] == "openai"  # one token: taken once
    assert order[:2] == ["tokens", "hold"], order
    assert "tokens (after the hold)" not in order


def test_a_request_refused_by_its_budget_gives_the_providers_tokens_back(
    fake_ai, complete, one_openai_request, user, settings
):
    settings.AI_USER_MONTHLY_BUDGET_USD = "1.00"
    usage_record(owner_id=user.pk, provider="openai", model="gpt-4o-mini", cost_usd=Decimal("1.00"))
    for _ in range(2):
        assert complete(max_tokens=1500).status_code == 402
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("50"))
    # The request token and 1500 + the prompt of the 2000 tokens per minute are all still there.
    assert _answers_from(fake_ai, complete, max_tokens=1500) == "openai"
    assert fake_ai.sent and len(fake_ai.to("openai")) == 1


def test_a_request_whose_deadline_passes_before_its_first_attempt_gives_the_tokens_back(
    fake_ai, complete, one_openai_request, settings
):
    settings.AI_DEADLINE_SECONDS = 0  # gone by the time the walk starts: no provider is asked
    resp = complete()
    assert resp.status_code == 503 and resp.json()["tried"][0]["error"] == "deadline"
    assert fake_ai.sent == []
    settings.AI_DEADLINE_SECONDS = 10.0
    assert _answers_from(fake_ai, complete) == "openai"


def test_the_tokens_are_taken_for_the_first_provider_the_walk_will_call(fake_ai, complete, settings, monkeypatch):
    """An unconfigured first entry is skipped by the walk: the tokens taken beside the hold are the next one's."""
    settings.OPENAI_API_KEY = ""
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "anthropic": {"requests": {"rate": 0.001, "burst": 1}, "tokens": {"rate": 0.001, "burst": 2000}},
    }
    real_async_execute = redis.asyncio.Redis.execute_command
    asked_later = []

    async def async_execute(self, *args, **options):
        if args[0] in ("EVALSHA", "EVAL"):
            asked_later.append(args)
        return await real_async_execute(self, *args, **options)

    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", async_execute)
    fake_ai.add("anthropic", anthropic_message("from anthropic"))
    resp = complete()
    assert resp.status_code == 200 and resp.json()["provider"] == "anthropic"
    assert resp.json()["fallbacks"] == []
    assert asked_later == []  # the attempt used the tokens taken beside the hold, it did not ask again


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("on_server_loop", [False, True], ids=["shared-thread", "hop-threads"])
def test_a_client_gone_during_the_hold_hop_gives_the_tokens_back(
    fake_ai, asgi_completion, complete, one_openai_request, monkeypatch, server_loop, on_server_loop
):
    taken = threading.Event()
    real_begin = ai_services.begin

    def slow_begin(*args, **kwargs):
        begun = real_begin(*args, **kwargs)  # the hold and the tokens are taken
        taken.set()
        time.sleep(0.3)
        return begun

    monkeypatch.setattr(ai_services, "begin", slow_begin)

    async def scenario():
        if on_server_loop:
            server_loop()
        call = asgi_completion({})
        while not taken.is_set():
            await asyncio.sleep(0.005)
        call.disconnect()
        await call.task
        await asyncio.sleep(0.5)  # the hop's thread has finished, and so has what it gave back

    async_to_sync(scenario)()
    assert fake_ai.sent == []
    monkeypatch.setattr(ai_services, "begin", real_begin)
    assert _answers_from(fake_ai, complete) == "openai"
