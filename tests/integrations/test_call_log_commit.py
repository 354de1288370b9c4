"""The call log's commit outside a caller's transaction (a task, a view calling a provider): the row and its
roll-ups in one round trip whose commit does not wait for the disk flush, all or nothing, and exact when
several workers record at once (integrations.usage.call_record)."""

import threading
from decimal import Decimal

import pytest
from django.db import DataError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from integrations import gateway
from integrations.models import ProviderCall, ProviderRollup, UsageRollup
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _send(owner, *, latency_units=1, scope=None):
    with gateway.attempt("acme", "send", owner=owner, scope=scope) as call:
        call.record(http_status=200, cost_usd="0.01", units={"segments": latency_units})


def _synchronous_commit():
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def _call_log_queries(queries):
    return [q["sql"] for q in queries.captured_queries if "integrations_providercall" in q["sql"]]


def test_a_call_is_one_round_trip_whose_commit_does_not_wait_for_the_flush(fake_provider):
    user = UserFactory()
    with CaptureQueriesContext(connection) as queries:
        _send(user, latency_units=3)
    sent = _call_log_queries(queries)
    # The owner's lock and the check that no erasure of theirs has started go first (integrations.erasing).
    assert len(sent) == 1 and sent[0].startswith(
        "SET LOCAL synchronous_commit TO OFF; SELECT privacy_owner_rows_guard("
    )
    assert "; WITH c AS (INSERT INTO" in sent[0]
    row = ProviderCall.objects.get()
    assert (row.outcome, row.owner_id, row.units, row.cost_usd) == ("ok", user.pk, {"segments": 3}, Decimal("0.01"))
    assert ProviderRollup.objects.get(provider="acme").calls == 1
    usage = UsageRollup.objects.get(provider="acme", owner=user)
    assert (usage.calls, usage.cost_usd, usage.sms_segments) == (1, Decimal("0.01"), 3)
    assert _synchronous_commit() == "on"  # the setting ended with the call row's own transaction


def test_inside_a_callers_transaction_the_row_commits_and_rolls_back_with_it(fake_provider):
    user = UserFactory()
    with CaptureQueriesContext(connection) as queries, pytest.raises(RuntimeError):
        with transaction.atomic():
            _send(user)
            raise RuntimeError("the caller's own work failed")
    assert not any("synchronous_commit" in sql for sql in _call_log_queries(queries))
    assert not ProviderCall.objects.exists()
    assert not ProviderRollup.objects.exists() and not UsageRollup.objects.exists()
    assert _synchronous_commit() == "on"


def test_a_row_the_database_refuses_leaves_no_roll_up_behind(fake_provider):
    user = UserFactory()
    _send(user)
    with pytest.raises(DataError):
        _send(user, scope="nul\x00byte")  # PostgreSQL refuses a NUL in text: the whole query string fails
    assert ProviderCall.objects.count() == 1
    assert ProviderRollup.objects.get(provider="acme").calls == 1
    assert UsageRollup.objects.get(provider="acme", owner=user).calls == 1
    _send(user)  # the connection is usable again: the failed implicit transaction ended
    assert UsageRollup.objects.get(provider="acme", owner=user).calls == 2


def test_two_workers_recording_at_once_keep_every_row_and_roll_up_exact(fake_provider):
    alice, bob = UserFactory(), UserFactory()
    per_worker = 40
    start = threading.Barrier(2)
    failures = []

    def worker(owner):
        try:
            start.wait(timeout=10)
            for i in range(per_worker):
                _send(owner if i % 2 else None, latency_units=2)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(owner,)) for owner in (alice, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert ProviderCall.objects.count() == 2 * per_worker
    provider = ProviderRollup.objects.get(provider="acme")
    assert (provider.calls, provider.ok, provider.sms_segments) == (80, 80, 160)
    assert provider.cost_usd == Decimal("0.80")
    by_owner = {row.owner_id: (row.calls, row.sms_segments) for row in UsageRollup.objects.filter(provider="acme")}
    assert by_owner == {alice.pk: (20, 40), bob.pk: (20, 40), None: (40, 80)}
