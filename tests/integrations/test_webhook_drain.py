"""Batch draining: events claimed in batches, in event-time order per object, each applied exactly once."""

import contextlib
import multiprocessing
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from integrations.models import WebhookEvent
from integrations.states import IllegalTransition
from integrations.webhooks import (
    InboundEvent,
    WebhookIgnored,
    WebhookPermanentError,
    processing,
    record_webhook,
    webhook_drain,
    webhook_replay,
)
from integrations.webhooks.registry import BATCH_PREPARERS, HANDLERS, ORDERING_KEYS, RARELY_RAISE
from integrations.webhooks.tasks import webhook_drain_task
from tests.integrations import webhook_provider as hubtest
from tests.testapp.models import Shipment

Status = WebhookEvent.Status
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def ordering(monkeypatch):
    """hubtest events name their object in payload["object"], like Stripe's data.object."""
    monkeypatch.setitem(ORDERING_KEYS, "hubtest", lambda payload: payload.get("object", ""))


@pytest.fixture
def applied(monkeypatch):
    """A handler that records (object, event id) in call order and writes one row per run (its own count)."""
    calls = []
    lock = threading.Lock()
    poison = set()

    def handler(event):
        Shipment.objects.create(external_id=event.event_id, state="sent")
        if event.event_id in poison:
            raise RuntimeError(f"cannot apply {event.event_id}")
        with lock:
            calls.append((event.payload.get("object", ""), event.event_id))

    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handler)
    handler.calls = calls
    handler.poison = poison
    return handler


def store(event_id, obj="", seconds=0, provider="hubtest"):
    """Store an event as the inbox does (verified delivery -> record_webhook), Stripe time T0 + seconds."""
    payload = {"id": event_id, "type": "thing.updated", "object": obj}
    inbound = InboundEvent(
        event_id=event_id, type="thing.updated", payload=payload, occurred_at=T0 + timedelta(seconds=seconds)
    )
    event, _ = record_webhook(provider=provider, inbound=inbound)
    return event


def statuses():
    return dict(WebhookEvent.objects.values_list("event_id", "status"))


def rows_per_event():
    from collections import Counter

    return Counter(Shipment.objects.values_list("external_id", flat=True))


@pytest.mark.django_db
class TestOneDrain:
    def test_a_batch_applies_events_of_one_object_in_event_time_order_whatever_the_arrival(self, applied):
        store("a3", "pi_A", 30)
        store("b1", "pi_B", 5)
        store("a1", "pi_A", 10)
        store("n1", "", 1)  # no object: no constraint, still in time order
        store("a2", "pi_A", 20)

        result = webhook_drain(provider="hubtest")

        assert result.claimed == 5 and result.counts == {"processed": 5} and not result.more
        assert [e for _, e in applied.calls] == ["n1", "b1", "a1", "a2", "a3"]
        assert set(statuses().values()) == {Status.PROCESSED}
        assert WebhookEvent.objects.get(event_id="a1").object_key == "pi_A"

    def test_the_drain_moves_events_only_as_their_transition_table_allows(self, applied, monkeypatch):
        """The batch's bulk write is governed by WebhookEvent.TRANSITIONS like every other writer: a move the
        table does not allow is refused and the whole batch rolls back, handler writes included."""
        store("evt_a", obj="pi_1")
        table = {
            **WebhookEvent.TRANSITIONS,
            Status.RECEIVED: WebhookEvent.TRANSITIONS[Status.RECEIVED] - {Status.PROCESSED},
            Status.PROCESSING: WebhookEvent.TRANSITIONS[Status.PROCESSING] - {Status.PROCESSED},
        }
        monkeypatch.setattr(WebhookEvent, "TRANSITIONS", table)
        with pytest.raises(IllegalTransition):
            webhook_drain(provider="hubtest")
        assert statuses() == {"evt_a": Status.RECEIVED} and not Shipment.objects.exists()

    def test_events_with_the_same_time_keep_their_arrival_order(self, applied):
        for name in ("x1", "x2", "x3"):
            store(name, "pi_X", 0)
        webhook_drain(provider="hubtest")
        assert [e for _, e in applied.calls] == ["x1", "x2", "x3"]

    def test_a_poisoned_event_fails_alone_and_holds_back_only_later_events_of_its_object(self, applied):
        applied.poison.add("a1")
        store("a1", "pi_A", 10)
        store("a2", "pi_A", 20)
        store("b1", "pi_B", 15)
        store("c1", "", 30)

        result = webhook_drain(provider="hubtest")

        assert result.counts == {"processed": 2, "failed": 1, "waiting": 1}
        assert result.retry_in is not None and not result.more
        assert [e for _, e in applied.calls] == ["b1", "c1"]
        assert statuses() == {"a1": "failed", "a2": "received", "b1": "processed", "c1": "processed"}
        # The failed handler's write rolled back with its savepoint; the others' committed.
        assert rows_per_event() == {"b1": 1, "c1": 1}
        a1 = WebhookEvent.objects.get(event_id="a1")
        assert a1.attempts == 1 and "cannot apply a1" in a1.last_error and a1.next_attempt_at > timezone.now()
        assert WebhookEvent.objects.get(event_id="a2").attempts == 0

        # Until its retry is due, the object stays held: nothing is claimed, nothing spins.
        assert webhook_drain(provider="hubtest").claimed == 0

        applied.poison.clear()
        WebhookEvent.objects.filter(event_id="a1").update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        result = webhook_drain(provider="hubtest")
        assert result.counts == {"processed": 2}
        assert [e for _, e in applied.calls][-2:] == ["a1", "a2"]
        assert rows_per_event() == {"a1": 1, "a2": 1, "b1": 1, "c1": 1}

    def test_an_event_that_failed_for_good_no_longer_holds_its_object(self, applied, register_permanent):
        register_permanent("thing.broken")
        store("a2", "pi_A", 20)
        event = InboundEvent(event_id="a1", type="thing.broken", payload={"object": "pi_A"}, occurred_at=T0)
        record_webhook(provider="hubtest", inbound=event)

        result = webhook_drain(provider="hubtest")

        assert result.counts == {"failed": 1, "processed": 1}
        assert statuses() == {"a1": "failed", "a2": "processed"}

    def test_a_slow_batch_stops_taking_events_and_leaves_the_rest_to_the_next_drain(
        self, applied, settings, monkeypatch
    ):
        # The drain's own clock, moved only by the handler: a busy machine's pauses cannot change the outcome.
        clock = [1000.0]
        monkeypatch.setattr(processing, "time", SimpleNamespace(monotonic=lambda: clock[0]))
        settings.WEBHOOK_DRAIN_MAX_SECONDS = 5
        original = HANDLERS[("hubtest", "thing.updated")]

        def slow(event):
            original(event)
            clock[0] += 6  # one event outlasts the whole budget

        HANDLERS[("hubtest", "thing.updated")] = slow
        for i in range(4):
            store(f"s{i}", f"pi_{i}", i)

        first = webhook_drain(provider="hubtest")
        assert first.counts == {"processed": 1, "deferred": 3} and first.more
        assert statuses() == {"s0": "processed", "s1": "received", "s2": "received", "s3": "received"}

        settings.WEBHOOK_DRAIN_MAX_SECONDS = 30  # six seconds a handler: all three fit
        assert webhook_drain(provider="hubtest").counts == {"processed": 3}
        assert rows_per_event() == {f"s{i}": 1 for i in range(4)}

    def test_a_full_batch_says_more_is_ready(self, applied, settings):
        for i in range(5):
            store(f"e{i}", "", i)
        result = webhook_drain(provider="hubtest", limit=3)
        assert result.claimed == 3 and result.more
        assert webhook_drain(provider="hubtest", limit=3).claimed == 2

    def test_a_batch_that_is_not_full_says_nothing_more_is_ready_without_looking_again(self, applied):
        """Whatever was ready at the claim is in the batch, and an event stored since asks for its own drain
        (dispatch.py): the claim is the drain's only read of the provider's ready events."""
        from django.test.utils import CaptureQueriesContext

        for i in range(3):
            store(f"e{i}", f"pi_{i}", i)
        with CaptureQueriesContext(connection) as queries:
            result = webhook_drain(provider="hubtest", limit=5)
        assert result.claimed == 3 and not result.more
        ready_reads = [q["sql"] for q in queries.captured_queries if "NOT EXISTS" in q["sql"].upper()]
        assert len(ready_reads) == 1  # the claim (FOR UPDATE SKIP LOCKED where the database has it)

    def test_a_full_batch_of_events_held_for_another_drainer_says_nothing_more_is_ready(self, applied, monkeypatch):
        """Draining again at once would claim the same held events and spin until the other drainer commits."""
        for i in range(3):
            store(f"h{i}", f"pi_{i}", i)
        monkeypatch.setattr(
            processing, "_objects_taken_elsewhere", lambda batch: {(e.provider, e.object_key) for e in batch}
        )
        result = webhook_drain(provider="hubtest", limit=3)
        assert result.counts == {"waiting": 3} and not result.more
        assert result.retry_in is not None  # it looks again shortly instead

    @pytest.mark.postgres
    def test_the_claim_reads_its_batch_from_the_pending_index_in_order_without_sorting_the_backlog(self, applied):
        """Not every pending row of the provider read (payloads included) and sorted, past every processed row."""
        from django.test.utils import CaptureQueriesContext

        for i in range(5):
            store(f"done{i}", f"pi_{i}", i)
        webhook_drain(provider="hubtest")
        for i in range(5):
            store(f"e{i}", f"pi_{i}", 10 + i)
        with CaptureQueriesContext(connection) as queries:
            webhook_drain(provider="hubtest", limit=3)
        (claim,) = [q["sql"] for q in queries.captured_queries if "SKIP LOCKED" in q["sql"]]
        with connection.cursor() as cursor:
            # A test table is tiny, where reading it all is cheapest: the question is whether the index answers.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute(f"EXPLAIN {claim}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "webhookevent_ready_idx" in plan and "Sort" not in plan, plan

    def test_the_claim_is_built_once_then_run_with_each_drains_provider_and_time(self, applied, monkeypatch):
        """Building and compiling the claim's subquery took the ORM ~2 ms of CPU per batch (issue 11)."""
        built, ready_events = [], processing.ready_events
        monkeypatch.setattr(processing, "_claims", {})
        monkeypatch.setattr(processing, "ready_events", lambda **kw: built.append(kw) or ready_events(**kw))
        applied.poison.add("e1")
        store("e1", "pi_A", 0)
        store("e2", "pi_A", 1)
        assert webhook_drain(provider="hubtest").counts == {"failed": 1, "waiting": 1}
        store("o1", "pi_A", 0, provider="other")
        assert webhook_drain(provider="hubtest").claimed == 0  # e1's retry is not due, and e2 waits for it
        assert webhook_drain(provider="other").counts == {"ignored": 1}  # another provider's, by the same statement
        applied.poison.clear()
        WebhookEvent.objects.filter(event_id="e1").update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert webhook_drain(provider="hubtest").counts == {"processed": 2}
        assert len(built) == 1
        assert [e for _, e in applied.calls] == ["e1", "e2"]
        assert statuses() == {"e1": "processed", "e2": "processed", "o1": "ignored"}

    def test_the_drain_task_drains_the_whole_backlog_batch_after_batch(self, applied, settings, celery_eager):
        settings.WEBHOOK_DRAIN_BATCH_SIZE = 4
        for i in range(10):
            store(f"e{i}", f"pi_{i % 3}", i)
        webhook_drain_task.delay("hubtest")
        assert set(statuses().values()) == {Status.PROCESSED}
        assert [e for _, e in applied.calls] == [f"e{i}" for i in range(10)]

    def test_another_providers_events_are_left_to_its_own_drain(self, applied):
        store("h1", "pi_A", 0)
        store("o1", "pi_A", 0, provider="other")
        webhook_drain(provider="hubtest")
        assert statuses() == {"h1": "processed", "o1": "received"}

    def test_a_replayed_event_is_drained_again(self, applied, celery_eager, django_capture_on_commit_callbacks):
        event = store("r1", "pi_R", 0)
        webhook_drain(provider="hubtest")
        with django_capture_on_commit_callbacks(execute=True):
            webhook_replay(event=event)
        event.refresh_from_db()
        assert event.status == Status.PROCESSED and event.attempts == 1
        assert [e for _, e in applied.calls] == ["r1", "r1"]  # a replay is a deliberate second run

    def test_a_replayed_old_event_holds_later_pending_events_of_its_object(self, applied):
        old = store("p1", "pi_P", 0)
        webhook_drain(provider="hubtest")
        applied.poison.add("p1")
        webhook_replay(event=old)
        store("p2", "pi_P", 10)
        assert webhook_drain(provider="hubtest").counts == {"failed": 1, "waiting": 1}
        assert statuses() == {"p1": "failed", "p2": "received"}


@pytest.mark.django_db
class TestBatchPreparer:
    """A provider's preparer runs once per batch before its handlers (one query instead of one per event)."""

    def test_it_runs_once_per_batch_before_the_handlers_which_see_what_it_left(self, monkeypatch):
        seen, batches = [], []

        def prepare(events):
            batches.append([e.event_id for e in events])
            for event in events:
                event.prepared = f"row of {event.event_id}"

        def handler(event):
            seen.append(getattr(event, "prepared", None))

        monkeypatch.setitem(BATCH_PREPARERS, "hubtest", prepare)
        monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handler)
        for i in range(5):
            store(f"e{i}", f"pi_{i}", i)

        assert webhook_drain(provider="hubtest", limit=3).counts == {"processed": 3}
        assert webhook_drain(provider="hubtest", limit=3).counts == {"processed": 2}

        assert batches == [["e0", "e1", "e2"], ["e3", "e4"]]
        assert seen == [f"row of e{i}" for i in range(5)]

    def test_a_preparer_that_fails_is_rolled_back_and_the_batch_is_handled_without_it(self, applied, monkeypatch):
        def prepare(events):
            Shipment.objects.create(external_id="written by the preparer", state="sent")
            raise RuntimeError("a payload the preparer did not expect")

        monkeypatch.setitem(BATCH_PREPARERS, "hubtest", prepare)
        store("a1", "pi_A", 0)
        store("b1", "pi_B", 1)

        assert webhook_drain(provider="hubtest").counts == {"processed": 2}
        assert [e for _, e in applied.calls] == ["a1", "b1"]
        assert rows_per_event() == {"a1": 1, "b1": 1}  # the preparer's own write rolled back with its savepoint

    def test_another_providers_preparer_is_not_run(self, applied, monkeypatch):
        calls = []
        monkeypatch.setitem(BATCH_PREPARERS, "other", calls.append)
        store("h1", "pi_A", 0)
        webhook_drain(provider="hubtest")
        assert calls == []


@pytest.fixture
def register_permanent(monkeypatch):
    def add(event_type):
        def handler(event):
            raise WebhookPermanentError("this can never apply")

        monkeypatch.setitem(HANDLERS, ("hubtest", event_type), handler)

    return add


@pytest.fixture
def together(monkeypatch):
    """hubtest declares its handlers rarely raise: a batch runs them in one savepoint (processing._handle_together)."""
    monkeypatch.setattr("integrations.webhooks.registry.RARELY_RAISE", RARELY_RAISE | {"hubtest"})


@pytest.mark.django_db
class TestHandlersInOneSavepoint:
    """A provider whose handlers rarely raise: same outcomes as a savepoint per handler, without paying for them."""

    def test_a_poisoned_event_fails_alone_and_every_other_event_is_applied_once(self, applied, together):
        applied.poison.add("a1")
        store("b1", "pi_B", 5)
        store("a1", "pi_A", 10)
        store("b2", "pi_B", 12)
        store("c1", "", 15)
        store("a2", "pi_A", 20)

        result = webhook_drain(provider="hubtest")

        assert result.counts == {"processed": 3, "failed": 1, "waiting": 1} and result.retry_in is not None
        assert statuses() == {"a1": "failed", "a2": "received", "b1": "processed", "b2": "processed", "c1": "processed"}
        # b1 ran before a1 raised: that run was taken back with a1's, so its write is there once.
        assert rows_per_event() == {"b1": 1, "b2": 1, "c1": 1}
        attempts = dict(WebhookEvent.objects.values_list("event_id", "attempts"))
        assert attempts == {"a1": 1, "a2": 0, "b1": 1, "b2": 1, "c1": 1}
        assert "cannot apply a1" in WebhookEvent.objects.get(event_id="a1").last_error

    def test_an_event_its_handler_ignores_after_writing_leaves_no_write(self, applied, together, monkeypatch):
        def ignoring(event):
            Shipment.objects.create(external_id=event.event_id, state="sent")
            raise WebhookIgnored("not ours after all")

        monkeypatch.setitem(HANDLERS, ("hubtest", "thing.skipped"), ignoring)
        store("x1", "pi_X", 1)
        record_webhook(
            provider="hubtest",
            inbound=InboundEvent(event_id="s1", type="thing.skipped", payload={"object": "pi_S"}, occurred_at=T0),
        )
        store("x2", "pi_X", 2)

        assert webhook_drain(provider="hubtest").counts == {"processed": 2, "ignored": 1}
        assert statuses() == {"s1": "ignored", "x1": "processed", "x2": "processed"}
        assert rows_per_event() == {"x1": 1, "x2": 1}

    # PostgreSQL's errors: SQLite neither refuses a too-long string nor aborts a transaction on an error.
    @pytest.mark.postgres
    def test_a_handler_that_swallows_a_database_error_does_not_take_the_others_writes_with_it(
        self, applied, together, monkeypatch
    ):
        """Django rolls back a block that saw a database error without raising: the batch's one savepoint
        must not be that block, or every handler's writes would go while their events say processed."""
        from django.db import DatabaseError

        def swallowing(event):
            with contextlib.suppress(DatabaseError):
                Shipment.objects.create(external_id=event.event_id, state="x" * 100)  # too long: DataError

        monkeypatch.setitem(HANDLERS, ("hubtest", "thing.swallowed"), swallowing)
        store("x1", "pi_X", 1)
        record_webhook(
            provider="hubtest",
            inbound=InboundEvent(
                event_id="w1", type="thing.swallowed", payload={"object": "pi_W"}, occurred_at=T0 + timedelta(seconds=5)
            ),
        )

        assert webhook_drain(provider="hubtest").counts == {"processed": 2}
        assert rows_per_event() == {"x1": 1}

    # PostgreSQL's errors: SQLite neither refuses a too-long string nor aborts a transaction on an error.
    @pytest.mark.postgres
    def test_a_handler_that_leaves_the_transaction_aborted_fails_alone(self, applied, together, monkeypatch):
        from django.db import DatabaseError

        def aborting(event):
            with connection.cursor() as cursor:
                with contextlib.suppress(DatabaseError):
                    cursor.execute("SELECT 1 / 0")

        monkeypatch.setitem(HANDLERS, ("hubtest", "thing.aborting"), aborting)
        store("x1", "pi_X", 1)
        record_webhook(
            provider="hubtest",
            inbound=InboundEvent(
                event_id="z1", type="thing.aborting", payload={"object": "pi_Z"}, occurred_at=T0 + timedelta(seconds=5)
            ),
        )

        assert webhook_drain(provider="hubtest").counts == {"processed": 1, "failed": 1}
        assert statuses() == {"x1": "processed", "z1": "failed"} and rows_per_event() == {"x1": 1}

    def test_a_raise_near_the_deadline_still_lets_the_guarded_run_handle_what_the_first_run_reached(
        self, applied, together, settings, monkeypatch
    ):
        """The run in one savepoint used the batch's time up to the raise: the run again with a savepoint per
        handler still gets through those events (else every drain would end the same way, and none progress)."""
        clock = [1000.0]
        monkeypatch.setattr(processing, "time", SimpleNamespace(monotonic=lambda: clock[0]))
        settings.WEBHOOK_DRAIN_MAX_SECONDS = 5
        original = HANDLERS[("hubtest", "thing.updated")]

        def slow(event):
            clock[0] += 2
            original(event)

        monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), slow)
        applied.poison.add("s2")
        for i in range(5):
            store(f"s{i}", f"pi_{i}", i)

        result = webhook_drain(provider="hubtest")

        assert result.counts == {"processed": 2, "failed": 1, "deferred": 2}
        assert statuses() == {"s0": "processed", "s1": "processed", "s2": "failed", "s3": "received", "s4": "received"}
        assert rows_per_event() == {"s0": 1, "s1": 1}

    def test_a_batch_whose_handlers_do_not_raise_takes_no_savepoint_per_event(self, applied, together):
        from django.test.utils import CaptureQueriesContext

        def savepoints(count):
            for i in range(count):
                store(f"n{count}-{i}", f"pi_{i}", i)
            with CaptureQueriesContext(connection) as queries:
                assert webhook_drain(provider="hubtest").counts == {"processed": count}
            return sum(q["sql"].startswith("SAVEPOINT") for q in queries.captured_queries)

        assert savepoints(2) == savepoints(12)


@pytest.fixture
def celery_eager():
    from config.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


@pytest.mark.django_db
@pytest.mark.usefixtures("applied")
class TestCoalescing:
    @pytest.fixture
    def sent(self, monkeypatch):
        sent = []
        monkeypatch.setattr(webhook_drain_task, "apply_async", lambda args, **kw: sent.append(args))
        return sent

    @pytest.fixture
    def deliver(self, client, settings, monkeypatch, django_capture_on_commit_callbacks):
        settings.HUBTEST_WEBHOOK_SECRET = hubtest.SECRET
        from integrations.webhooks.registry import VERIFIERS

        monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, hubtest.verify)

        def deliver(event_id):
            body = hubtest.event_body(event_id)
            with django_capture_on_commit_callbacks(execute=True):
                resp = client.post(
                    "/webhooks/hubtest/",
                    body,
                    content_type="application/json",
                    HTTP_X_HUBTEST_SIGNATURE=hubtest.sign(body),
                )
            assert resp.status_code == 200

        return deliver

    @pytest.mark.redis
    def test_a_burst_of_deliveries_queues_one_drain_until_a_drain_starts(self, deliver, sent):
        from integrations.webhooks.dispatch import drain_started

        for i in range(20):
            deliver(f"burst{i}")
        assert sent == [("hubtest",)]
        drain_started("hubtest")  # a worker took the drain: the next event needs a new one
        deliver("after")
        assert sent == [("hubtest",), ("hubtest",)]

    @pytest.mark.redis
    def test_the_flag_expires_so_a_lost_drain_message_is_not_trusted_for_long(self, deliver, sent, settings):
        from integrations.redis import get_client
        from integrations.webhooks.dispatch import _flag

        settings.WEBHOOK_DRAIN_COALESCE_SECONDS = 0.05
        deliver("one")
        assert len(sent) == 1
        deadline = time.monotonic() + 30
        while get_client().exists(_flag("hubtest")):  # polled: Redis expires it however busy this machine is
            assert time.monotonic() < deadline, "the drain flag never expired"
            time.sleep(0.01)
        deliver("two")
        assert len(sent) == 2

    def test_without_redis_every_delivery_queues_a_drain(self, deliver, sent, settings):
        settings.REDIS_URL = ""
        for i in range(3):
            deliver(f"solo{i}")
        assert len(sent) == 3

    def test_a_broker_that_refuses_the_drain_still_answers_200_and_the_sweeper_finds_it(
        self, deliver, monkeypatch, settings
    ):
        def refuse(*args, **kwargs):
            raise ConnectionError("broker down")

        monkeypatch.setattr(webhook_drain_task, "apply_async", refuse)
        deliver("lost")
        settings.WEBHOOK_REQUEUE_AFTER_SECONDS = 0
        sent = []
        monkeypatch.setattr(webhook_drain_task, "apply_async", lambda args, **kw: sent.append(args))
        from integrations.webhooks import webhook_requeue_stale

        time.sleep(0.01)
        assert webhook_requeue_stale() == 1 and sent == [("hubtest",)]


def _drain_until_idle(provider, errors, idle_rounds=5):
    """Drain as a worker would, until several rounds in a row find nothing ready."""
    try:
        idle = 0
        while idle < idle_rounds:
            if webhook_drain(provider=provider, limit=7).claimed:
                idle = 0
            else:
                idle += 1
                time.sleep(0.01)
    except Exception as exc:  # surfaced by the assertion in the test
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_one_savepoint", [False, True], ids=["savepoint-per-handler", "one-savepoint"])
def test_concurrent_drainers_apply_every_event_once_and_each_object_in_order(applied, monkeypatch, in_one_savepoint):
    """Four drainers in threads over 120 events of 12 objects arriving shuffled: SKIP LOCKED splits the work."""
    if in_one_savepoint:
        monkeypatch.setattr("integrations.webhooks.registry.RARELY_RAISE", RARELY_RAISE | {"hubtest"})
    original = HANDLERS[("hubtest", "thing.updated")]

    def handler(event):
        original(event)
        time.sleep(random.uniform(0, 0.003))  # hold locks long enough for the drainers to meet

    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handler)
    rng = random.Random(11)
    plan = [(f"o{i % 12}", i) for i in range(120)]
    rng.shuffle(plan)
    for obj, t in plan:
        store(f"ev{t:03d}", obj, t)

    errors = []
    threads = [threading.Thread(target=_drain_until_idle, args=("hubtest", errors)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert set(statuses().values()) == {Status.PROCESSED}
    assert rows_per_event() == {f"ev{t:03d}": 1 for t in range(120)}
    by_object = {}
    for obj, event_id in applied.calls:
        by_object.setdefault(obj, []).append(event_id)
    assert len(applied.calls) == 120
    assert all(ids == sorted(ids) for ids in by_object.values()), by_object
    assert set(WebhookEvent.objects.values_list("attempts", flat=True)) == {1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_object_in_another_drainers_batch_waits_so_their_writes_never_deadlock(monkeypatch, settings):
    """A late event (older, delivered after the newer one was claimed) in a second drainer's batch.

    Each handler writes its object's row. Without one drainer per object, B wrote X then waited for Y (A's),
    while A went on to X (B's): PostgreSQL failed one of the two events as a deadlock.
    """
    for obj in ("X", "Y"):
        Shipment.objects.create(external_id=obj)
    a_inside, b_done = threading.Event(), threading.Event()

    def handler(event):
        Shipment.objects.filter(external_id=event.payload["object"]).update(error=event.event_id)
        if event.event_id == "y20":  # A's first event: B claims and drains while A holds Y's row
            a_inside.set()
            b_done.wait(3)

    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handler)
    store("y20", "Y", 20)
    store("x30", "X", 30)
    results, errors = {}, []

    def drain(name, limit):
        try:
            results[name] = webhook_drain(provider="hubtest", limit=limit)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            if name == "B":
                b_done.set()
            connection.close()

    a = threading.Thread(target=drain, args=("A", 2))
    a.start()
    assert a_inside.wait(10)
    store("x05", "X", 5)  # late: both older than what A holds
    store("y10", "Y", 10)
    b = threading.Thread(target=drain, args=("B", 10))
    b.start()
    b.join(10)
    a.join(10)

    assert errors == []
    assert results["A"].counts == {"processed": 2}
    assert results["B"].counts == {"waiting": 2}
    assert results["B"].retry_in == settings.WEBHOOK_HELD_RECHECK_SECONDS  # it looks again itself
    assert webhook_drain(provider="hubtest").counts == {"processed": 2}
    assert set(WebhookEvent.objects.values_list("attempts", flat=True)) == {1}


def _crash_in_the_middle(crash_at):
    """Child process: drain one batch and die (no cleanup, like a killed worker) inside the crash_at-th handler."""
    connection.close()  # a connection of its own, not the parent's socket
    original = HANDLERS[("hubtest", "thing.updated")]
    seen = []

    def handler(event):
        original(event)
        seen.append(event.event_id)
        if len(seen) == crash_at:
            os._exit(17)

    HANDLERS[("hubtest", "thing.updated")] = handler
    webhook_drain(provider="hubtest")
    os._exit(0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_one_savepoint", [False, True], ids=["savepoint-per-handler", "one-savepoint"])
def test_a_worker_dying_mid_batch_loses_no_event_and_applies_none_twice(applied, monkeypatch, in_one_savepoint):
    if in_one_savepoint:
        monkeypatch.setattr("integrations.webhooks.registry.RARELY_RAISE", RARELY_RAISE | {"hubtest"})
    for i in range(10):
        store(f"c{i}", f"pi_{i % 3}", i)
    connection.close()  # the child must not share this connection's socket

    child = multiprocessing.get_context("fork").Process(target=_crash_in_the_middle, args=(6,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 17  # it died inside the sixth handler

    # Its transaction died with it: every event is as it was, no handler write survived.
    assert set(statuses().values()) == {Status.RECEIVED}
    assert set(WebhookEvent.objects.values_list("attempts", flat=True)) == {0}
    assert Shipment.objects.count() == 0

    # The redelivered drain (acks_late) or the sweeper's applies each event once.
    assert webhook_drain(provider="hubtest").counts == {"processed": 10}
    assert rows_per_event() == {f"c{i}": 1 for i in range(10)}
