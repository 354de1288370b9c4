"""A web worker's slices of its users' budgets (ai.leases): holds without a round trip, never past the budget.

A user's first completion in a worker holds a slice of their month's budget in the one conditional UPDATE it
made anyway; their next ones hold from the slice in memory. The row's reserved_usd always counts the slice, a
settlement moves the cost from it to spent_usd, and an idle slice goes back to the row.
"""

import json
import random
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from ai import leases, usage
from ai.models import AiBudget, AiRequest, AiSpend
from integrations import aio
from tests.ai.fakes import openai_chat

# The writer's and the sweeper's threads have connections of their own: rows must be committed for them to see.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def month_row(user):
    """The user's row for this month: a slice is held on it (a month's first request starts the row itself)."""
    return AiSpend.objects.create(owner=user, month=usage.month_of(), spent_usd=0)


@pytest.fixture
def holds(monkeypatch):
    """The amounts of the conditional UPDATEs on the user's row (a slice, or a request's own hold)."""
    seen, real = [], usage._hold

    def counted(owner_id, month, amount, limit):
        seen.append(amount)
        return real(owner_id, month, amount, limit)

    monkeypatch.setattr(usage, "_hold", counted)
    return seen


def _completions(asgi_completion, server_loop, n, body=None):
    """`n` completions (of `body`) one after another on the server's loop, their bookings then written."""

    async def scenario():
        server_loop()
        calls = []
        for _ in range(n):
            call = asgi_completion(dict(body or {}))
            await call.task
            calls.append(call)
        await aio.settle(timeout=10)
        return calls

    return async_to_sync(scenario)()


def _costs(calls):
    assert [call.status for call in calls] == [200] * len(calls), [call.raw for call in calls]
    return [Decimal(json.loads(call.raw)["cost_usd"]) for call in calls]


def test_a_users_completions_hold_from_the_workers_slice_without_a_round_trip_each(
    fake_ai, asgi_completion, server_loop, month_row, holds
):
    fake_ai.add("openai", *(openai_chat("hello", usage=(1000, 100, 0)) for _ in range(5)))
    costs = _costs(_completions(asgi_completion, server_loop, 5))
    # One UPDATE: the first request's, for a slice of AI_BUDGET_LEASE_REQUESTS holds like its own.
    assert len(holds) == 1
    (lease,) = leases._leases.values()
    month_row.refresh_from_db()
    # Spent is what the answers cost; the slice, less that, is still held for the user's next requests.
    assert month_row.spent_usd == sum(costs)
    assert month_row.reserved_usd == lease.size == holds[0] - sum(costs) == lease.available
    assert lease.running == 0
    assert leases.give_back(idle_seconds=0) == 1
    month_row.refresh_from_db()
    assert (month_row.spent_usd, month_row.reserved_usd) == (sum(costs), 0)
    assert leases._leases == {}


def test_an_idle_slice_goes_back_to_the_row_on_its_own_and_a_stopping_worker_gives_back_the_rest(
    fake_ai, asgi_completion, server_loop, month_row, settings, user
):
    import time

    settings.AI_BUDGET_LEASE_IDLE_SECONDS = 0.2
    fake_ai.add("openai", openai_chat("hello"), openai_chat("hello"))
    costs = _costs(_completions(asgi_completion, server_loop, 1))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the sweeper's UPDATE commits just after the lease leaves the worker
        month_row.refresh_from_db()
        if month_row.reserved_usd == 0:
            break
        time.sleep(0.05)
    assert (leases._leases, month_row.spent_usd, month_row.reserved_usd) == ({}, costs[0], 0)

    settings.AI_BUDGET_LEASE_IDLE_SECONDS = 600
    costs += _costs(_completions(asgi_completion, server_loop, 1))
    assert leases._leases
    leases.stop()  # the worker's shutdown (config.asgi's lifespan), after its last bookings
    month_row.refresh_from_db()
    assert (month_row.spent_usd, month_row.reserved_usd) == (sum(costs), 0)


def test_a_changed_limit_acts_on_the_next_request(fake_ai, asgi_completion, server_loop, month_row, holds, user):
    fake_ai.add("openai", *(openai_chat("hello") for _ in range(3)))
    before = usage.budget_limit(user.pk)
    _costs(_completions(asgi_completion, server_loop, 1))
    AiBudget.objects.create(owner=user, monthly_limit_usd=before * 100)
    _costs(_completions(asgi_completion, server_loop, 2))
    # A slice under the old limit, one under the new; the old one is the sweeper's to give back.
    assert len(holds) == 2 and {key[2] for key in leases._leases} == {before, before * 100}
    leases.give_back(idle_seconds=0)
    month_row.refresh_from_db()
    assert month_row.reserved_usd == 0


def test_near_the_limit_a_request_holds_exactly_its_own_and_is_refused_as_before(
    fake_ai, asgi_completion, server_loop, month_row, holds, user, settings
):
    """No room for a slice: the request holds its own amount (one UPDATE more); past the budget it is refused
    with the row's figures, none of them lent."""
    limit = usage.budget_limit(user.pk)
    settings.AI_BUDGET_LEASE_REQUESTS = 0  # what one request holds on its own
    fake_ai.add("openai", *(openai_chat("hello") for _ in range(3)))
    _costs(_completions(asgi_completion, server_loop, 1))
    (amount,) = holds
    settings.AI_BUDGET_LEASE_REQUESTS = 20
    holds.clear()
    AiSpend.objects.filter(pk=month_row.pk).update(spent_usd=limit - amount * 3 / 2)  # room for it, not a slice
    _costs(_completions(asgi_completion, server_loop, 1))
    slice_ = leases._slice(amount, limit)  # 20 such holds, at most 1 % of the limit
    assert holds == [slice_, amount] and leases._leases == {}
    holds.clear()
    leases._no_room.clear()
    AiSpend.objects.filter(pk=month_row.pk).update(spent_usd=limit - amount / 2)
    (refused,) = _completions(asgi_completion, server_loop, 1)
    assert holds == [slice_, amount]
    answer = json.loads(refused.raw)
    assert (refused.status, answer["error"], Decimal(answer["reserved_usd"])) == (402, "budget_exceeded", 0)
    assert "set aside by the hub's web workers for your next ones, until idle for 5 s" in answer["detail"]
    month_row.refresh_from_db()
    assert (month_row.spent_usd, month_row.reserved_usd) == (limit - amount / 2, 0)


def test_a_booking_that_fails_after_settling_frees_the_requests_share_of_the_slice_once(
    fake_ai, asgi_completion, server_loop, month_row, monkeypatch
):
    """Step by step the settlement is written, then the request log fails: the savepoint undoes the settlement,
    and abandon() frees the hold, so the slice gets the request's share back once."""
    from ai.services.booking import Booking

    fake_ai.add("openai", openai_chat("hello"))

    def not_built(self, *args, **kwargs):
        raise ValueError("a statement could not be built")

    def broken(**fields):
        raise RuntimeError("request log table is gone")

    monkeypatch.setattr(Booking, "answered_at_once", not_built)
    monkeypatch.setattr("ai.services.booking.request_log", broken)
    calls = _completions(asgi_completion, server_loop, 1)
    assert calls[0].status == 200 and AiRequest.objects.count() == 0
    (lease,) = leases._leases.values()
    month_row.refresh_from_db()
    assert (lease.running, lease.available, month_row.reserved_usd, month_row.spent_usd) == (
        0,
        lease.size,
        lease.size,
        0,
    )
    leases.give_back(idle_seconds=0)
    month_row.refresh_from_db()
    assert (month_row.reserved_usd, month_row.spent_usd) == (0, 0)


@pytest.mark.parametrize("seed", range(4))
def test_the_row_always_counts_every_slice_and_hold_and_the_budget_is_never_passed(seed, user, settings):
    """Holds, extensions and settlements at random, some with leases on, some off (another worker, a Celery
    task), against one row: reserved_usd is always the slices plus the holds of their own, and spent + reserved
    stays within the limit."""
    rng = random.Random(seed)
    settings.AI_BUDGET_LEASE_SHARE_PERCENT = 25
    limit = Decimal("1.00")
    AiSpend.objects.create(owner=user, month=usage.month_of(), spent_usd=0)
    running, own = [], Decimal(0)  # reservations not settled; what the ones outside leases hold
    leases.start()
    try:
        for _ in range(120):
            op = rng.random()
            if op < 0.45 or not running:
                amount = Decimal(rng.randint(1, 60)) / 1000
                lent = rng.random() < 0.7
                sweeper, leases._sweeper = leases._sweeper, leases._sweeper if lent else None
                try:
                    running.append(usage.budget_reserve(user.pk, amount, limit=limit))
                except Exception as exc:  # noqa: BLE001 - a refusal
                    assert getattr(exc, "status", None) == 402, exc
                finally:
                    leases._sweeper = sweeper
            elif op < 0.55:
                held = rng.choice(running)
                usage.budget_extend(held, Decimal(rng.randint(1, 20)) / 1000)
            elif op < 0.95:
                held = running.pop(rng.randrange(len(running)))
                usage.budget_settle(held, held.amount * Decimal(rng.randint(0, 100)) / 100)
            else:
                leases.give_back(idle_seconds=0)
            own = sum((r.amount for r in running if r.lease is None), Decimal(0))
            slices = sum((lease.size for lease in leases._leases.values()), Decimal(0))
            row = AiSpend.objects.get(owner=user)
            assert row.reserved_usd == slices + own
            assert row.spent_usd + row.reserved_usd <= limit
            for lease in leases._leases.values():
                lent_out = sum((r.amount for r in running if r.lease is lease), Decimal(0))
                assert lease.available == lease.size - lent_out >= 0
        for held in running:
            usage.budget_settle(held, held.amount)
    finally:
        leases.stop()
    row = AiSpend.objects.get(owner=user)
    assert row.reserved_usd == 0 and row.spent_usd <= limit


def test_slices_that_could_not_be_given_back_are_given_back_once_at_the_next_sweep(user, monkeypatch):
    """All or none: of two slices, the second's UPDATE fails; neither is taken off the row (the first's would be
    again at the next sweep, freeing what another request holds), and the next sweep gives both back."""
    other = type(user).objects.create(username="other-leaser")
    for owner in (user, other):
        AiSpend.objects.create(owner=owner, month=usage.month_of(), spent_usd=0)
    leases.start()
    try:
        for owner in (user, other):
            held = usage.budget_reserve(owner.pk, Decimal("0.001"), limit=Decimal("10"))
            assert held.lease is not None
            usage.budget_settle(held, Decimal("0.0005"))
        real, calls = usage.give_back_statement, []

        def second_fails(owner_id, month, amount):
            calls.append(owner_id)
            if len(calls) == 2:
                return "UPDATE ai_table_that_is_gone SET n = 1", []
            return real(owner_id, month, amount)

        monkeypatch.setattr(usage, "give_back_statement", second_fails)
        assert leases.give_back(idle_seconds=0) == 0
        assert sorted(AiSpend.objects.values_list("reserved_usd", flat=True)) == [Decimal("0.0195")] * 2
        monkeypatch.setattr(usage, "give_back_statement", real)
        assert leases.give_back(idle_seconds=0) == 2
        assert leases.give_back(idle_seconds=0) == 0
        rows = AiSpend.objects.values_list("spent_usd", "reserved_usd")
        assert sorted(rows) == [(Decimal("0.0005"), 0)] * 2
    finally:
        leases.stop()


def test_a_check_that_fails_after_a_batched_booking_leaves_the_slices_accounting_done(
    fake_ai, asgi_completion, server_loop, month_row, monkeypatch
):
    """The web worker's writer commits the booking, then runs its call-log checks: one that fails (a metric, an
    alert) is logged, and the slice has the request's share back all the same, so it can be given back."""
    from integrations.gateway import bookings

    def failing(*args, **kwargs):
        raise RuntimeError("a metric check failed")

    monkeypatch.setattr(bookings, "call_recorded", failing)
    fake_ai.add("openai", openai_chat("hello"))
    (cost,) = _costs(_completions(asgi_completion, server_loop, 1))
    (lease,) = leases._leases.values()
    assert (lease.running, lease.available) == (0, lease.size)
    assert leases.give_back(idle_seconds=0) == 1
    month_row.refresh_from_db()
    assert (month_row.spent_usd, month_row.reserved_usd) == (cost, 0)


def test_a_provider_that_billed_and_failed_extends_the_hold_from_the_slice(
    fake_ai, asgi_completion, server_loop, month_row, holds
):
    """Anthropic billed the input, then failed; before the next provider the hold is extended by that bill
    (Booking.cover_billed), from the slice; the request is booked both, and the slice's accounting closes."""
    from tests.ai.fakes import openai_sse_chunks, parse_sse, sse_response
    from tests.ai.test_streaming import _anthropic_failing_after_message_start

    fake_ai.add("anthropic", sse_response(_anthropic_failing_after_message_start(10_000)))
    fake_ai.add("openai", sse_response(openai_sse_chunks(["fine"], usage=(1000, 3, 0), model="gpt-4.1")))

    (call,) = _completions(asgi_completion, server_loop, 1, {"stream": True, "task": "writing"})
    kind, done = parse_sse(call.raw)[-1]
    assert (kind, done["provider"], done["content"]) == ("done", "openai", "fine")
    lost, answered = Decimal("0.030000"), Decimal("0.002024")  # as tests/ai/test_streaming.py prices them
    (lease,) = leases._leases.values()
    assert (len(holds), lease.running, lease.available) == (1, 0, lease.size)  # one UPDATE: the slice
    assert lease.size == holds[0] - lost - answered
    month_row.refresh_from_db()
    assert (month_row.spent_usd, month_row.reserved_usd) == (lost + answered, lease.size)
    leases.give_back(idle_seconds=0)
    month_row.refresh_from_db()
    assert (month_row.spent_usd, month_row.reserved_usd) == (lost + answered, 0)
