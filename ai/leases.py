"""Budget leases: a web worker holds a slice of a user's monthly AI budget ahead, for that user's next requests.

Every completion holds its largest possible cost before a provider is called (ai.usage.budget_reserve: one
conditional UPDATE of the user's AiSpend row). In a web worker under the ASGI server that round trip was the
largest part of the hub's own latency (~1 ms of ~6 on the bench machine: bench/RESULTS.md, "AI serving").
With a lease, the first request of a user in a worker holds a slice of the budget in that same UPDATE
(AI_BUDGET_LEASE_REQUESTS times its own hold, at most AI_BUDGET_LEASE_SHARE_PERCENT of the user's limit), and
the user's next requests in that worker hold theirs from the slice, in memory: no round trip until it runs out.

PostgreSQL stays the ledger, and the budget is never passed: the row's `reserved_usd` includes every worker's
lease, so a request anywhere else still cannot hold what a lease holds, and a lease's requests cannot hold more
than it does. A request's settlement (its booking) moves its cost from the lease to `spent_usd` (reserved -=
cost, spent += cost), and what its hold did not use goes back to the lease. A lease nobody used for
AI_BUDGET_LEASE_IDLE_SECONDS is given back to the row (reserved -= what is left of it), as is every lease when the
worker stops (ASGI lifespan shutdown). A worker killed outright leaves its leases reserved until the month ends,
as it leaves the holds of its running requests: the user is refused early, never let past the budget.

What a lease changes for the user: up to AI_BUDGET_LEASE_SHARE_PERCENT of their budget per web worker may be
held for their next requests while they are active, so a user within that share of their limit may be refused
a little early (a refusal reports it as held). Near the limit (no room for a slice) a request holds exactly its
own amount, as without leases. A changed limit (an override, AI_USER_MONTHLY_BUDGET_USD) acts on the next
request: leases are per limit, and the old one is given back when idle.

A slice that could not be held (no room, or the month's first request, whose row does not exist yet) is not
tried again for that user for AI_BUDGET_LEASE_IDLE_SECONDS: their requests meanwhile hold their own amounts.

Erasure: a user's erasure deletes their tokens first, so no request of theirs is authenticated after it starts.
One authenticated just before may hold from a slice even once the erasure has handed the user's month (the slice
with it) to the pseudonym, where a hold of its own would have found no row and been refused (usage._hold_slowly);
as for any request in flight at an erasure, its booking is then the pseudonym's (Booking.owned_now), settled on
the pseudonym's row, and no row of the user's is written. A slice given back after the hand-over is taken off
the pseudonym's row.

Only where something gives leases back: started by the ASGI lifespan (config.asgi, with the connection pool);
anywhere else (Celery workers, tests that do not start it, SQLite) every request holds its own amount.
"""

import logging
import threading
import time
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from integrations.aio import close_connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_leases = {}  # (owner_id, month, limit) -> Lease
_no_room = {}  # (owner_id, month, limit) -> monotonic time until which no slice is tried (the last did not fit)
_unreturned = []  # Leases whose giving back failed (PostgreSQL down): tried again at the next sweep
_sweeper = None


class Lease:
    """A slice of one user's budget for one month and limit. `size`: what the row's reserved_usd holds for it;
    `available`: what of that no running request holds. Both change under the module's lock only."""

    __slots__ = ("owner_id", "month", "limit", "size", "available", "running", "used_at")

    def __init__(self, owner_id, month, limit):
        self.owner_id, self.month, self.limit = owner_id, month, limit
        self.size = self.available = Decimal(0)
        self.running = 0
        self.used_at = time.monotonic()


def running():
    """True when this process lends: its sweeper runs (start) and leases are on (AI_BUDGET_LEASE_REQUESTS)."""
    return _sweeper is not None and settings.AI_BUDGET_LEASE_REQUESTS > 0


def take(owner_id, month, amount, limit, hold):
    """A lease `amount` was held from, or None (no slice to be had: the caller holds `amount` on its own).

    `hold(amount)`: the conditional UPDATE of the user's row (True when it held), used to open or grow a lease
    by a slice."""
    key = (owner_id, month, limit)
    lease = _take(key, amount)
    if lease is not None:
        return lease
    slice_ = _slice(amount, limit)
    if slice_ is None or _no_room.get(key, 0) > time.monotonic():
        return None
    if not hold(slice_):
        with _lock:
            _no_room[key] = time.monotonic() + settings.AI_BUDGET_LEASE_IDLE_SECONDS
        return None
    with _lock:
        lease = _leases.get(key)
        if lease is None:
            lease = _leases[key] = Lease(owner_id, month, limit)
        lease.size += slice_
        lease.available += slice_ - amount
        lease.running += 1
        lease.used_at = time.monotonic()
    return lease


def _take(key, amount):
    with _lock:
        lease = _leases.get(key)
        if lease is None or lease.available < amount:
            return None
        lease.available -= amount
        lease.running += 1
        lease.used_at = time.monotonic()
        return lease


def _slice(amount, limit):
    """How much a new slice holds: AI_BUDGET_LEASE_REQUESTS holds like this one, at most the limit's share;
    None when that is not two of them (no lease: it would only add a round trip)."""
    share = Decimal(str(settings.AI_BUDGET_LEASE_SHARE_PERCENT)) / 100
    slice_ = min(amount * settings.AI_BUDGET_LEASE_REQUESTS, limit * share)
    return slice_ if amount > 0 and slice_ >= 2 * amount else None


def extend(lease, amount, hold):
    """Hold `amount` more for a running request of `lease`: from what the lease has free, else by growing the
    lease by exactly that (`hold(amount)`); False when neither can."""
    with _lock:
        if lease.available >= amount:
            lease.available -= amount
            return True
    if not hold(amount):
        return False
    with _lock:
        lease.size += amount
    return True


def settled(lease, amount, cost):
    """A request that held `amount` of `lease` is settled at `cost` (committed): the lease shrinks by what was
    spent (the row's reserved_usd did by the same), and what the hold did not use is free again."""
    with _lock:
        lease.size -= cost
        lease.available += amount - cost
        lease.running -= 1
        lease.used_at = time.monotonic()


def give_back(*, idle_seconds=None):
    """Give the leases idle for `idle_seconds` (default AI_BUDGET_LEASE_IDLE_SECONDS; 0: every lease no request
    is running on) back to their rows, in one transaction; returns how many were given back."""
    idle = settings.AI_BUDGET_LEASE_IDLE_SECONDS if idle_seconds is None else idle_seconds
    now = time.monotonic()
    with _lock:
        done = [k for k, lease in _leases.items() if lease.running == 0 and now - lease.used_at >= idle]
        leaving = [_leases.pop(k) for k in done] + _unreturned
        _unreturned.clear()
        for key in [k for k, until in _no_room.items() if until <= now]:
            del _no_room[key]
    # By owner, as the bookings writer locks rows (integrations.gateway.bookings): two workers' sweeps never deadlock.
    leaving = sorted((lease for lease in leaving if lease.size > 0), key=lambda lease: (lease.owner_id, lease.month))
    if not leaving:
        return 0
    from integrations.erasing import pseudonyms_now

    from .usage import give_back_statement

    try:
        # All or none: a lease given back twice would free what another request holds.
        with transaction.atomic(), connection.cursor() as cursor:
            # The owners' locks held shared, as a booking holds them (integrations.erasing): a user's erasure hands
            # their month, the slice in it, to the pseudonym, whose row then gets the slice back.
            pseudonyms = pseudonyms_now([lease.owner_id for lease in leaving])
            for lease in leaving:
                cursor.execute(*give_back_statement(lease.owner_id, lease.month, lease.size))
                if cursor.rowcount == 0 and lease.owner_id in pseudonyms:
                    cursor.execute(*give_back_statement(pseudonyms[lease.owner_id], lease.month, lease.size))
    except DatabaseError as exc:
        logger.warning("AI budget leases: %d not given back yet: %r", len(leaving), exc)
        with _lock:
            _unreturned.extend(leaving)
        return 0
    return len(leaving)


class _Sweeper(threading.Thread):
    def __init__(self):
        super().__init__(name="ai-budget-leases", daemon=True)
        self.stopping = threading.Event()

    def run(self):
        interval = max(0.5, settings.AI_BUDGET_LEASE_IDLE_SECONDS / 2)
        while not self.stopping.wait(interval):
            try:
                give_back()
            except Exception:  # noqa: BLE001 - logged; the next sweep tries again
                logger.exception("AI budget leases: a sweep failed")
            finally:
                close_connections()  # back to the pool between sweeps


def start():
    """Lend in this process (ASGI lifespan startup, with the connection pool): start the sweeper."""
    global _sweeper
    if _sweeper is None:
        _sweeper = _Sweeper()
        _sweeper.start()


def forget():
    """Drop every lease without giving it back, and stop lending: for tests, whose rows go with them."""
    global _sweeper
    if _sweeper is not None:
        _sweeper.stopping.set()
        _sweeper = None
    with _lock:
        _leases.clear()
        _no_room.clear()
        _unreturned.clear()


def stop():
    """Stop lending and give every lease back (ASGI lifespan shutdown, once the running requests are booked)."""
    global _sweeper
    current, _sweeper = _sweeper, None
    if current is not None:
        current.stopping.set()
        current.join()
    try:
        give_back(idle_seconds=0)
    finally:
        close_connections()
