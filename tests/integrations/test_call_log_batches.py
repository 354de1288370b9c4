"""The call-log writer of a web worker under the ASGI server (integrations.gateway.batchlog).

Rows of calls whose client already has its answer (a flight search) are written in batches
by one thread: exact rows and roll-ups, one bad row never takes the others, a failing
database keeps them for the next round, and the worker's shutdown writes what is left.
"""

import asyncio
import logging
import time
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from integrations import gateway
from integrations.context import open_response_scope, reset_response_scope
from integrations.gateway import batchlog
from integrations.models import ProviderCall, ProviderRollup, UsageRollup
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def writer(monkeypatch):
    """A writer that writes only when told (flush), as the web worker's would every BATCH_INTERVAL."""
    w = batchlog.CallLogWriter(interval=3600)
    monkeypatch.setattr(batchlog, "_writer", w)
    return w


@pytest.fixture
def answering():
    scope, token = open_response_scope()
    yield scope
    scope.run()
    reset_response_scope(token)


def call_answered_later(user, operation="send", units=None):
    with gateway.attempt("acme", operation, owner=user, log_after_response=True) as att:
        att.record(http_status=200, units=units)


def test_a_batch_keeps_rows_and_roll_ups_exact(writer, answering, fake_provider):
    alice, bob = UserFactory(), UserFactory()
    for user in (alice, alice, bob):
        call_answered_later(user)
    assert writer.pending() == 3 and answering.pending == []  # nothing left for after the answer
    writer.flush()
    assert ProviderCall.objects.filter(provider="acme").count() == 3
    by_owner = dict(UsageRollup.objects.filter(provider="acme").values_list("owner_id", "calls"))
    assert by_owner == {alice.pk: 2, bob.pk: 1}
    assert ProviderRollup.objects.get(provider="acme").calls == 3


def test_outside_a_request_the_row_is_written_at_once(writer, fake_provider):
    call_answered_later(UserFactory())
    assert ProviderCall.objects.filter(provider="acme").count() == 1 and writer.pending() == 0


@pytest.mark.postgres  # the bad row is one PostgreSQL refuses (a NUL); SQLite stores it
def test_one_bad_row_does_not_take_the_others_and_is_reported_lost(writer, answering, fake_provider, caplog):
    user = UserFactory()
    call_answered_later(user, "good.one")
    call_answered_later(user, "bad\x00row")  # PostgreSQL refuses a NUL in text: the batch's statement fails
    call_answered_later(user, "good.two")
    writer.flush()
    assert set(ProviderCall.objects.values_list("operation", flat=True)) == {"good.one", "good.two"}
    assert UsageRollup.objects.get(provider="acme", owner=user).calls == 2
    assert writer.pending() == 1  # tried again next round
    with caplog.at_level(logging.ERROR, logger="integrations.gateway.batchlog"):
        for _ in range(batchlog.ATTEMPTS - 1):
            writer.flush()
    assert writer.pending() == 0
    assert "1 ProviderCall rows not written" in caplog.text and "acme bad" in caplog.text
    assert ProviderCall.objects.count() == 2


def test_a_failing_database_keeps_the_rows_for_the_next_round(writer, answering, fake_provider, monkeypatch):
    from django.db import OperationalError

    down, tried = [True], []

    def unreachable(real):
        def call(*args, **kwargs):
            tried.append(real.__name__)
            if down[0]:
                raise OperationalError("connection pool timeout")
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(batchlog, "calls_record", unreachable(batchlog.calls_record))
    monkeypatch.setattr(batchlog, "_write", unreachable(batchlog._write))
    call_answered_later(UserFactory())
    call_answered_later(UserFactory())
    writer.flush()
    # The batch failed on the database, not on a row: no row tried alone (each would wait for the pool again).
    assert tried == ["calls_record"] and writer.pending() == 2 and not ProviderCall.objects.exists()
    down[0] = False
    writer.flush()
    assert writer.pending() == 0
    assert [c.cost_usd for c in ProviderCall.objects.all()] == [Decimal("0.01")] * 2  # priced as ever
    assert ProviderRollup.objects.get(provider="acme").cost_usd == Decimal("0.02")


@pytest.mark.django_db(transaction=True)  # the writer's own thread writes with a connection of its own
class TestTheWritersThread:
    def test_rows_are_written_within_the_interval(self, monkeypatch, fake_provider):
        w = batchlog.CallLogWriter(interval=0.02).start()
        monkeypatch.setattr(batchlog, "_writer", w)
        scope, token = open_response_scope()
        try:
            call_answered_later(UserFactory())
        finally:
            scope.run()
            reset_response_scope(token)
        deadline = time.monotonic() + 5
        while not ProviderCall.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        w.stop()
        assert ProviderCall.objects.filter(provider="acme").count() == 1

    def test_stopping_writes_what_is_left(self, monkeypatch, fake_provider):
        w = batchlog.CallLogWriter(interval=3600).start()  # asleep: only the stop can write
        monkeypatch.setattr(batchlog, "_writer", w)
        scope, token = open_response_scope()
        try:
            user = UserFactory()
            call_answered_later(user)
            call_answered_later(user)
        finally:
            scope.run()
            reset_response_scope(token)
        assert batchlog.writer() is w
        batchlog.stop()
        assert batchlog.writer() is None and w.pending() == 0
        assert ProviderCall.objects.filter(provider="acme").count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_web_workers_lifespan_runs_the_writer_and_its_shutdown_writes_what_is_left(
    settings, fake_provider, monkeypatch
):
    import config.asgi
    from integrations import aio

    async def no_warm_up(app):
        pass

    settings.SYNC_VIEW_THREADS = 2  # the ASGI server with the connection pool
    monkeypatch.setattr(config.asgi, "warm_loop", no_warm_up)
    monkeypatch.setattr(batchlog, "BATCH_INTERVAL", 3600)  # asleep: only the shutdown writes
    monkeypatch.setattr(batchlog, "_writer", None)
    user = UserFactory()

    def answered_call():
        scope, token = open_response_scope()
        try:
            call_answered_later(user)
        finally:
            scope.run()
            reset_response_scope(token)

    async def scenario():
        messages, sent = asyncio.Queue(), []

        async def send(message):
            sent.append(message["type"])

        await messages.put({"type": "lifespan.startup"})
        server = asyncio.create_task(config.asgi.application({"type": "lifespan"}, messages.get, send))
        while "lifespan.startup.complete" not in sent:
            await asyncio.sleep(0.01)
        running = batchlog.writer()
        await sync_to_async(answered_call, thread_sensitive=False)()
        pending = running.pending()
        await messages.put({"type": "lifespan.shutdown"})
        await server
        return running, pending, sent

    try:
        running, pending, sent = async_to_sync(scenario)()
    finally:
        aio.serve_on(None)
    assert running is not None and pending == 1
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert batchlog.writer() is None and ProviderCall.objects.filter(provider="acme", owner=user).count() == 1


def _calls(specs):
    """Unsaved ProviderCalls from (provider, owner, outcome, latency_ms, units, cost) tuples."""
    return [
        ProviderCall(
            provider=provider,
            operation="send",
            owner=owner,
            outcome=outcome,
            http_status=200,
            latency_ms=latency,
            attempt=1,
            units=units,
            cost_usd=Decimal(cost),
        )
        for provider, owner, outcome, latency, units, cost in specs
    ]


def test_one_statement_for_many_calls_adds_up_as_one_at_a_time_does(fake_provider):
    """usage.calls_record (the batch) against usage.call_record (each call alone): the same rows and roll-ups."""
    from integrations.usage import call_record, calls_record

    alice, bob = UserFactory(), UserFactory()
    specs = [
        ("acme", alice, "ok", 3.2, {"segments": 2}, "0.02"),
        ("acme", alice, "ok", 250.0, {"segments": 1}, "0.015"),
        ("acme", None, "ok", 0.4, {}, "0"),
        ("acme", bob, "ok", 41.0, {"input_tokens": 1200, "output_tokens": 80}, "0.0003"),
        ("stripe", bob, "ok", 12.5, {}, "0"),
        ("stripe", None, "ok", 9.0, {}, "0.01"),
    ]

    def calls():
        return _calls(specs)

    def state():  # every column but the id, in a stable order
        provider_rows = sorted((row[1:] for row in ProviderRollup.objects.values_list()), key=repr)
        owner_rows = sorted((row[1:] for row in UsageRollup.objects.values_list()), key=repr)
        logged = sorted(ProviderCall.objects.values_list("provider", "owner_id", "latency_ms", "cost_usd"), key=repr)
        return provider_rows, owner_rows, logged

    calls_record(calls())
    batched = state()
    ProviderCall.objects.all().delete()
    ProviderRollup.objects.all().delete()
    UsageRollup.objects.all().delete()
    for call in calls():
        call_record(call)
    alone = state()
    assert batched == alone
    # Two providers; owners alice, bob and none (the hour is the call's: created now).
    assert len(batched[0]) == 2 and len(batched[1]) == 5 and len(batched[2]) == len(specs)
    assert [row[2] for row in batched[0]] == [4, 2]  # calls per provider
    alice_row = UsageRollup.objects.get(provider="acme", owner=alice)
    assert (alice_row.calls, alice_row.cost_usd, alice_row.latency_ms_sum) == (2, Decimal("0.035"), 253.2)


def test_calls_add_each_of_their_amounts_to_existing_roll_up_rows_as_the_orm_steps_do(fake_provider):
    """An existing roll-up row is added only the columns a call has something in (usage.upsert_sql `added`):
    calls of every outcome, latency bucket and unit, one at a time and in batches, end where the ORM's
    one-column-at-a-time path (usage.rollup_record_call, the SQLite path) ends."""
    from integrations.usage import call_record, calls_record, rollup_record_call

    alice = UserFactory()
    specs = [
        ("acme", alice, "ok", 3.2, {"segments": 2}, "0.02"),
        ("acme", alice, "error", 250.0, {}, "0"),
        ("acme", None, "timeout", 30000.0, {}, "0"),
        ("acme", alice, "rate_limited", 0.0, {}, "0"),
        ("acme", None, "ok", 41.0, {"input_tokens": 1200, "output_tokens": 80}, "0.0003"),
        ("acme", alice, "circuit_open", 0.1, {}, "0"),
        ("acme", alice, "ok", 900.0, {"segments": 1}, "0.015"),
    ]

    def calls():
        return _calls(specs)

    def state():
        return (
            sorted((row[1:] for row in ProviderRollup.objects.values_list()), key=repr),
            sorted((row[1:] for row in UsageRollup.objects.values_list()), key=repr),
        )

    def reset():
        ProviderCall.objects.all().delete()
        ProviderRollup.objects.all().delete()
        UsageRollup.objects.all().delete()

    for call in calls():
        call.save(force_insert=True)
        rollup_record_call(call)
    expected = state()
    reset()
    for call in calls():
        call_record(call)
    assert state() == expected
    reset()
    first, *rest = calls()
    call_record(first)  # the rows exist, then the batch adds to them
    calls_record(rest[:3])
    calls_record(rest[3:])
    assert state() == expected


def test_roll_up_amounts_are_written_as_number_literals_and_nothing_else():
    """The roll-up sums go into the statement's text (usage.sql_number): numbers only, exact, never a string."""
    from integrations.usage import sql_number

    assert [sql_number(v) for v in (0, 7, Decimal("0.000300"), Decimal("1E-7"), 12.5, 1e-05)] == [
        "0",
        "7",
        "0.000300",
        "0.0000001",
        "12.5",
        "1e-05",
    ]
    assert sql_number(float("nan")) == "'NaN'::float8" and sql_number(float("-inf")) == "'-Infinity'::float8"
    for bad in ("1; DROP TABLE x", None, True, b"1"):
        with pytest.raises(TypeError):
            sql_number(bad)
