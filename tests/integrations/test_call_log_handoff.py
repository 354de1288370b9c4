"""The call-log rows of Celery jobs, handed off through Redis (integrations.gateway.handoff).

A successful call's row goes to a Redis list; a drainer writes batches exactly once (a batch
written twice, or swept back from a drainer that died mid-batch, counts each call once, in rows
and roll-ups); a failed call, or a call while Redis is down, is written at once as before; a
graceful stop writes what is left; only a Celery worker turns it on.
"""

import time
from decimal import Decimal

import pytest
import redis
import responses
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.db.models import Sum

from config.celery import app
from integrations import gateway
from integrations.errors import ProviderUnavailable
from integrations.gateway import handoff
from integrations.models import Alert, ProviderCall, ProviderRollup, UsageRollup
from integrations.redis import get_client
from integrations.tasks import call_log_handoff_sweep
from tests.factories import UserFactory
from tests.integrations import acme
from tests.testapp.models import Shipment
from tests.testapp.tasks import shipment_send

pytestmark = [
    pytest.mark.usefixtures("handoff_keys_empty"),
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.redis,
]

ROLLUP_TOTALS = ("calls", "errors", "cost_usd", "sms_segments")
PROVIDER_TOTALS = ("calls", "ok", "error", "cost_usd", "sms_segments")


def queued():
    return get_client().llen(handoff._keys()["queue"])


def in_flight(d):
    return get_client().llen(handoff._keys()["inflight"] + d.id)


def sent(user, operation="send", segments=1):
    with gateway.attempt("acme", operation, owner=user) as att:
        att.record(http_status=200, units={"segments": segments})
    return att


def parked():
    return get_client().lrange(handoff._keys()["failed"], 0, -1)


def totals():
    usage = UsageRollup.objects.filter(provider="acme").aggregate(**{f"t_{c}": Sum(c) for c in ROLLUP_TOTALS})
    per_provider = ProviderRollup.objects.filter(provider="acme").aggregate(
        **{f"t_{c}": Sum(c) for c in PROVIDER_TOTALS}
    )
    by_owner = dict(UsageRollup.objects.filter(provider="acme").values_list("owner_id", "calls"))
    return usage, per_provider, by_owner


def three_calls(alice, bob):
    sent(alice)
    sent(alice, segments=3)
    sent(bob)


def test_a_call_is_handed_off_and_a_batch_writes_its_row_and_roll_ups_as_the_direct_path_does(drainer, fake_provider):
    alice, bob = UserFactory(), UserFactory()
    att = sent(alice)
    assert queued() == 1 and not ProviderCall.objects.exists() and att.row is None  # in Redis, not yet in PostgreSQL
    sent(alice, segments=3)
    sent(bob)
    assert drainer.drain_once() == 3
    assert queued() == 0 and in_flight(drainer) == 0
    handed_off = totals()
    rows = list(ProviderCall.objects.values_list("handoff_id", "cost_usd"))
    assert len(rows) == 3 and all(h is not None for h, _ in rows)
    assert handed_off[0]["t_cost_usd"] == Decimal("0.01") * 3 + Decimal("0.005") * 5

    ProviderCall.objects.all().delete(), UsageRollup.objects.all().delete(), ProviderRollup.objects.all().delete()
    handoff._enabled = False  # the same calls written by each call itself
    three_calls(alice, bob)
    assert totals() == handed_off


def test_the_row_keeps_the_time_of_its_call_not_of_its_batch(drainer, fake_provider):
    sent(UserFactory())
    queued_at = handoff.load(get_client().lindex(handoff._keys()["queue"], 0)).created_at
    time.sleep(0.01)
    drainer.drain_once()
    assert ProviderCall.objects.get().created_at == queued_at


def test_a_batch_written_twice_counts_each_call_once(drainer, fake_provider, monkeypatch):
    alice, bob = UserFactory(), UserFactory()
    three_calls(alice, bob)
    # The drainer dies after its commit, before its in-flight list is deleted: the batch stays in flight.
    with monkeypatch.context() as m:
        m.setattr(redis.Redis, "delete", lambda self, *keys: 0)
        drainer.drain_once()
    once = totals()
    assert in_flight(drainer) == 3
    assert drainer.drain_once() == 3  # its next round takes the same batch again, before anything new
    assert ProviderCall.objects.count() == 3 and totals() == once
    assert once[2] == {alice.pk: 2, bob.pk: 1} and in_flight(drainer) == 0
    assert parked() == []  # not refused as duplicates either: simply not inserted again


def test_a_drainer_killed_mid_batch_is_swept_and_its_rows_written_once_by_another(drainer, fake_provider):
    alice, bob = UserFactory(), UserFactory()
    three_calls(alice, bob)
    dead = handoff.Drainer(interval=3600)
    assert len(dead.take()) == 3  # taken, not written: then the process is killed
    other = handoff.Drainer(interval=3600)
    assert other.sweep() == 0  # its heartbeat is alive: a slow drainer keeps its batch
    get_client().delete(handoff._keys()["alive"] + dead.id)  # ... until its heartbeat expires
    assert other.sweep() == 3 and queued() == 3 and in_flight(dead) == 0
    assert other.drain_once() == 3
    assert ProviderCall.objects.count() == 3 and totals()[2] == {alice.pk: 2, bob.pk: 1}


def test_a_drainer_killed_after_its_commit_is_swept_and_nothing_is_counted_twice(drainer, fake_provider, monkeypatch):
    alice, bob = UserFactory(), UserFactory()
    three_calls(alice, bob)
    dead = handoff.Drainer(interval=3600)
    with monkeypatch.context() as m:
        m.setattr(redis.Redis, "delete", lambda self, *keys: 0)  # killed between its commit and its delete
        dead.drain_once()
    assert totals()[2] == {alice.pk: 2, bob.pk: 1}
    sent(alice, segments=2)  # two more calls queued meanwhile: the next batch holds old rows and new ones
    sent(bob)
    get_client().delete(handoff._keys()["alive"] + dead.id)
    assert handoff.sweep_and_drain() == 5  # the beat task: the dead batch back to the queue, all written
    assert ProviderCall.objects.count() == 5 and queued() == 0 and parked() == []
    usage, per_provider, by_owner = totals()
    assert by_owner == {alice.pk: 3, bob.pk: 2} and per_provider["t_calls"] == per_provider["t_ok"] == 5
    assert usage["t_sms_segments"] == 1 + 3 + 1 + 2 + 1 and usage["t_cost_usd"] == Decimal("0.05") + Decimal("0.04")


def test_a_failed_call_is_written_at_once_not_handed_off(drainer, fake_provider):
    with pytest.raises(ProviderUnavailable):
        with gateway.attempt("acme", "send", owner=UserFactory()):
            raise ProviderUnavailable("acme", "connection refused")
    assert queued() == 0
    assert ProviderCall.objects.get().outcome == "error"  # the next attempt (a refund's retry) reads it


def test_a_call_a_later_attempt_reads_back_is_written_at_once_not_handed_off(drainer, fake_provider):
    # A refund's retry asks whether an earlier attempt created it at Stripe (payments.services.refunds._maybe_sent).
    sent(UserFactory(), operation="refund.create")
    assert queued() == 0
    assert ProviderCall.objects.get().operation == "refund.create"


def test_an_erasure_writes_the_users_handed_off_rows_first_and_hands_them_to_the_pseudonym(drainer, fake_provider):
    from privacy import erasure as erasure_service

    user, other = UserFactory(), UserFactory()
    sent(user)
    sent(other)
    assert queued() == 2
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=UserFactory(is_staff=True), expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"
    assert queued() == 0
    calls = ProviderCall.objects.filter(provider="acme")
    assert calls.count() == 2 and not calls.filter(owner_id=user.pk).exists()
    assert calls.filter(owner__username=erasure.pseudonym).count() == 1


def test_while_redis_is_down_the_row_is_written_directly(drainer, fake_provider, monkeypatch, caplog):
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    monkeypatch.setattr(handoff, "get_client", lambda: unreachable)
    att = sent(UserFactory())
    assert att.row is not None and ProviderCall.objects.get().handoff_id is None
    assert UsageRollup.objects.get(provider="acme").calls == 1
    assert "writing it directly" in caplog.text


def test_a_row_that_fails_alone_is_kept_aside_and_the_others_written(drainer, fake_provider, caplog):
    user = UserFactory()
    sent(user, "good.one")
    sent(user, "bad\x00row")  # PostgreSQL refuses a NUL in text: the batch's statement fails
    sent(user, "good.two")
    assert drainer.drain_once() == 3
    assert set(ProviderCall.objects.values_list("operation", flat=True)) == {"good.one", "good.two"}
    assert UsageRollup.objects.get(provider="acme", owner=user).calls == 2
    assert [handoff.load(p).operation for p in parked()] == ["bad\x00row"]
    assert in_flight(drainer) == 0 and "acme bad" in caplog.text
    # Beat's sweep tells staff, every round, while rows wait there.
    assert not Alert.objects.filter(dedupe_key="calllog:failed").exists()
    call_log_handoff_sweep()
    alert = Alert.objects.get(dedupe_key="calllog:failed", resolved_at__isnull=True)
    assert alert.kind == "operations" and alert.message.startswith("1 call-log rows")


def test_a_batch_writes_each_column_as_the_direct_path_does(drainer, fake_provider):
    """The batch's INSERT takes one array per column (usage._calls_insert): NULLs, JSON units, amounts and
    times land as the direct path's single-row INSERT writes them."""
    alice = UserFactory()

    def calls():
        sent(alice, segments=3)
        with gateway.attempt("acme", "send", owner=None, idempotency_key="k-1", related=("shipment", "7")) as att:
            att.record(http_status=None, units={})
        with pytest.raises(ProviderUnavailable), gateway.attempt("acme", "send", owner=alice) as att:
            raise ProviderUnavailable("down", code="unavailable")

    def rows():  # every column but the id, the hand-off id and the times taken and made, in a stable order
        skip = ("id", "handoff_id", "created_at", "latency_ms")
        names = [f.attname for f in ProviderCall._meta.concrete_fields if f.attname not in skip]
        return sorted(ProviderCall.objects.values_list(*names), key=repr)

    calls()
    assert drainer.drain_once() == 2  # the failed attempt was written at once
    handed_off = rows()
    ProviderCall.objects.all().delete()
    handoff._enabled = False
    calls()
    assert rows() == handed_off and len(handed_off) == 3


def test_a_value_too_long_for_its_column_is_refused_not_cut_short(drainer, fake_provider):
    user = UserFactory()
    sent(user, "good.one")
    sent(user, "long")
    client, queue = get_client(), handoff._keys()["queue"]
    long = handoff.load(client.rpop(queue))
    long.operation = "x" * 65  # operation is varchar(64) (the gateway cuts it; a row from elsewhere may not)
    client.rpush(queue, handoff.dump(long))
    assert drainer.drain_once() == 2
    assert list(ProviderCall.objects.values_list("operation", flat=True)) == ["good.one"]
    assert [handoff.load(p).operation for p in parked()] == ["x" * 65]


def test_the_batch_insert_has_one_text_for_any_number_of_rows(fake_provider):
    """psycopg keeps the split of a short statement's text and split a batch's VALUES list anew every time."""
    from integrations.usage import _calls_insert

    def call():
        return ProviderCall(provider="acme", operation="send", outcome="ok", latency_ms=1.0, units={}, cost_usd=0)

    one, params = _calls_insert([call()])
    many, _ = _calls_insert([call() for _ in range(30)])
    assert one == many and len(one) < 4096 and len(params) < 50


def test_a_graceful_stop_writes_what_is_left(fake_provider, monkeypatch):
    d = handoff.Drainer(interval=3600).start()  # would not write for an hour on its own
    monkeypatch.setattr(handoff, "_enabled", True)
    monkeypatch.setattr(handoff, "_drainer", d)
    for _ in range(3):
        sent(None)
    handoff.stop()
    assert ProviderCall.objects.count() == 3 and queued() == 0
    assert not get_client().sismember(handoff._keys()["drainers"], d.id)  # gone, nothing left in flight
    assert handoff.drainer() is None  # and calls are written directly from then on
    sent(None)
    assert ProviderCall.objects.count() == 4


def test_nothing_is_handed_off_outside_a_worker(fake_provider):
    assert handoff.drainer() is None
    att = sent(UserFactory())
    assert att.row is not None and queued() == 0


@pytest.mark.django_db(transaction=True)  # the worker's and the drainer's threads write with connections of their own
def test_a_celery_worker_hands_its_calls_off_and_writes_them_before_it_stops(
    fake_provider, django_db_blocker, monkeypatch
):
    monkeypatch.setattr(handoff, "_enabled", False)  # as it was, whatever the worker leaves
    shipment = Shipment.objects.create(body={"from": "+15550001"})
    conf = connection.settings_dict
    max_age, conf["CONN_MAX_AGE"] = conf["CONN_MAX_AGE"], 0
    try:
        with responses.RequestsMock() as http, django_db_blocker.unblock():
            http.post(acme.URL, json={"id": "ext-h1", "units": {}})
            with start_worker(
                app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10
            ) as worker:
                shipment_send.delay(shipment.pk)
                deadline = time.monotonic() + 10
                while Shipment.objects.get(pk=shipment.pk).state != "sent" and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert handoff.drainer() is not None
                worker.stop()  # a warm shutdown, as on SIGTERM
            assert handoff.drainer() is None  # the worker's shutdown stopped it
    finally:
        conf["CONN_MAX_AGE"] = max_age
        handoff.stop()
    call = ProviderCall.objects.get(provider="acme")
    assert call.handoff_id is not None and call.outcome == "ok" and call.related_id == str(shipment.pk)
