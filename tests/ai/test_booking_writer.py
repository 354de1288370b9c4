"""Answered completions are booked by the web worker's batch writer (integrations.gateway.bookings)."""

import asyncio
import logging
import threading
from decimal import Decimal
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync

from ai.models import AiRequest, AiSpend, AiUsageMonthly
from ai.services.booking import Booking
from integrations import aio
from integrations.gateway import bookings
from integrations.models import ProviderCall
from tests.ai.fakes import openai_chat

# The writer's thread has a connection of its own: the rows must be committed for it to see them.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def no_window(settings):
    """A round right after each answer (AI_BOOKING_ROUND_MS 0): the tests of a busy writer hold its first round."""
    settings.AI_BOOKING_ROUND_MS = 0


@pytest.fixture
def round_trips(monkeypatch):
    sent = []

    def counted(statements):
        sent.append(len(statements))
        return aio.at_once(statements)

    monkeypatch.setattr(bookings, "at_once", counted)
    return sent


@pytest.fixture
def first_round_held(monkeypatch):
    """The writer's first round waits for `.set()`: the answers that come meanwhile wait for its next round."""
    gate = threading.Event()
    real = bookings._write_group
    rounds = []

    def held(group):
        rounds.append(len(group))
        if len(rounds) == 1:
            assert gate.wait(10), "the test never released the writer"
        return real(group)

    monkeypatch.setattr(bookings, "_write_group", held)
    gate.rounds = rounds
    return gate


def _answers(asgi_completion, server_loop, n, gate):
    """`n` completions one after another on the server's loop while the writer's first round is held; their
    bookings then written (settle)."""

    async def scenario():
        server_loop()
        calls = []
        for _ in range(n):
            call = asgi_completion({})
            await call.task
            calls.append(call)
        gate.set()
        await aio.settle(timeout=10)
        return calls

    return async_to_sync(scenario)()


def test_answers_that_come_while_the_writer_is_busy_are_booked_in_one_round_trip(
    fake_ai, asgi_completion, server_loop, round_trips, first_round_held, no_window
):
    fake_ai.add("openai", *(openai_chat("hello", usage=(1000, 100, 0)) for _ in range(4)))
    calls = _answers(asgi_completion, server_loop, 4, first_round_held)
    assert [call.status for call in calls] == [200] * 4
    # The first answer's call row, usage, request log and settlement; then the next three's in one query string;
    # each string led by the owners' lock and the check that none is being erased (integrations.erasing).
    assert first_round_held.rounds == [1, 3] and round_trips == [1 + 4, 1 + 12]
    costs = [Decimal(call.json()["cost_usd"]) for call in calls]
    assert ProviderCall.objects.filter(outcome="ok").count() == 4
    assert sorted(r.cost_usd for r in AiRequest.objects.all()) == sorted(costs)
    assert all(r.latency_ms < 5000 for r in AiRequest.objects.all())  # to the answer, not to the held round
    usage = AiUsageMonthly.objects.get()
    assert (usage.requests, usage.input_tokens, usage.cost_usd) == (4, 4000, sum(costs))
    spend = AiSpend.objects.get()
    assert (spend.spent_usd, spend.reserved_usd) == (sum(costs), 0)


def test_a_booking_the_database_refuses_does_not_take_the_others_in_its_batch(
    fake_ai, asgi_completion, server_loop, monkeypatch, round_trips, first_round_held, caplog, no_window
):
    fake_ai.add("openai", *(openai_chat("hello") for _ in range(4)))
    real = Booking.answered_at_once
    seen = []

    def third_refused(self, *args, **kwargs):
        seen.append(self)
        statements, after = real(self, *args, **kwargs)
        if len(seen) == 3:
            statements = [*statements, ("UPDATE ai_table_that_is_gone SET n = 1", [])]
        return statements, after

    monkeypatch.setattr(Booking, "answered_at_once", third_refused)
    with caplog.at_level(logging.WARNING, logger="integrations.gateway.bookings"):
        calls = _answers(asgi_completion, server_loop, 4, first_round_held)
    assert [call.status for call in calls] == [200] * 4
    assert "a batch of 3 failed" in caplog.text
    # The batch; then each booking on its own (_write_ok_then: the refused one step by step).
    assert round_trips == [1 + 4, 1 + 13]  # each led by the owners' lock and erasure check
    assert AiRequest.objects.count() == 4 and ProviderCall.objects.count() == 4
    spend = AiSpend.objects.get()
    assert spend.reserved_usd == 0 and spend.spent_usd == sum(r.cost_usd for r in AiRequest.objects.all())


def test_a_workers_shutdown_writes_the_bookings_still_waiting(fake_ai, asgi_completion, server_loop, first_round_held):
    from config.asgi import application

    fake_ai.add("openai", openai_chat("hello"), openai_chat("hello"))

    async def scenario():
        server_loop()
        calls = []
        for _ in range(2):
            call = asgi_completion({})
            await call.task
            calls.append(call)
        waiting = await aio.db_hop(AiRequest.objects.count)  # closes its connection after
        threading.Timer(0.3, first_round_held.set).start()  # the round in progress ends during the shutdown
        messages = iter([{"type": "lifespan.shutdown"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message["type"])

        await application({"type": "lifespan"}, receive, send)
        return calls, waiting, sent

    calls, waiting, sent = async_to_sync(scenario)()
    assert [call.status for call in calls] == [200, 200] and waiting == 0
    assert sent == ["lifespan.shutdown.complete"] and bookings.writer() is None
    assert AiRequest.objects.count() == 2 and ProviderCall.objects.count() == 2
    assert AiSpend.objects.get().reserved_usd == 0


def test_a_booking_put_after_the_writers_thread_stopped_is_written_by_a_round_of_its_own(monkeypatch, no_window):
    """A request that took the writer before the worker's shutdown and answers after its last round: the
    writer's thread is gone, so the round it hands over runs on the loop's default executor instead."""
    written = []
    monkeypatch.setattr(bookings, "_write_group", lambda group: written.extend(att for att, _, _ in group))
    writer = bookings.BookingWriter()
    writer.stop()  # the shutdown: its thread ended, what was waiting written
    att = SimpleNamespace(provider="openai", owner_id=1)

    async def answered_after_the_shutdown():
        writer.put(att, 12.5)
        await asyncio.sleep(0)  # the loop's next step hands the round over

    asyncio.run(answered_after_the_shutdown())  # which also waits for the default executor's rounds

    assert writer.drain(timeout=1) and written == [att]


def test_the_answers_of_a_window_are_booked_together_after_it(
    fake_ai, asgi_completion, server_loop, round_trips, settings
):
    """A round starts AI_BOOKING_ROUND_MS after the first answer it books: answers within that window are
    sent before anything is written, then booked in one round trip, money and all."""
    settings.AI_BOOKING_ROUND_MS = 2000
    fake_ai.add("openai", *(openai_chat("hello", usage=(1000, 100, 0)) for _ in range(3)))

    async def scenario():
        server_loop()
        calls = []
        for _ in range(3):
            call = asgi_completion({})
            await call.task
            calls.append(call)
        before = (list(round_trips), await aio.db_hop(AiRequest.objects.count))
        await aio.settle(timeout=10)
        return calls, before

    calls, (trips_before, booked_before) = async_to_sync(scenario)()
    assert [call.status for call in calls] == [200] * 3
    assert trips_before == [] and booked_before == 0  # three answers out, nothing written yet
    # Then each one's call row, usage, request log and settlement, in one round trip, led by the owner's lock and
    # erasure check (integrations.erasing).
    assert round_trips == [1 + 12]
    costs = [Decimal(call.json()["cost_usd"]) for call in calls]
    assert sorted(r.cost_usd for r in AiRequest.objects.all()) == sorted(costs)
    assert ProviderCall.objects.filter(outcome="ok").count() == 3
    spend = AiSpend.objects.get()
    assert (spend.spent_usd, spend.reserved_usd) == (sum(costs), 0)


def test_a_full_batch_is_written_without_waiting_out_the_window(monkeypatch):
    written = []
    monkeypatch.setattr(bookings, "_write_group", lambda group: written.extend(att for att, _, _ in group))
    writer = bookings.BookingWriter(max_bookings=2, delay_ms=600_000)
    first, second = (SimpleNamespace(provider="openai", owner_id=n) for n in (1, 2))

    async def two_answers():
        writer.put(first, 1.0)
        writer.put(second, 1.0)  # MAX_BOOKINGS waiting: handed over at once
        done = await asyncio.get_running_loop().run_in_executor(None, writer.drain, 10)
        writer._thread.shutdown(wait=True)
        return done

    assert asyncio.run(two_answers()) and written == [first, second]


def test_a_started_writer_has_its_thread_running_before_the_first_answer():
    """Started on the first hand-over instead, the thread held a fresh worker's event loop 3-10 ms right after
    its first answer, as the client's next request came in."""
    writer = bookings.start()
    try:
        assert [thread.is_alive() for thread in writer._thread._threads] == [True]
    finally:
        bookings.stop()
