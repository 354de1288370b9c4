"""Prices, the monthly roll-up, and per-user budgets for AI completions."""

import functools
import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from integrations.aio import at_once, can_send_at_once, commit_without_flush_wait
from integrations.alerts import alert_raise
from integrations.auth.tokens import NOT_READ, read_along
from integrations.erasing import pseudonyms_now
from integrations.errors import DomainError
from integrations.models import Alert
from integrations.redis import cache_best_effort
from integrations.usage import sql_number, upsert_sql

from . import leases
from .models import AiBudget, AiFreeModel, AiSpend, AiUsageMonthly

logger = logging.getLogger(__name__)

_MILLION = Decimal(1_000_000)


def price_entry(provider, model):
    """The model's row in AI_MODEL_PRICES (or its provider's "*" row), or None."""
    table = settings.AI_MODEL_PRICES.get(provider, {})
    return table.get(model) or table.get("*")


def price(
    provider, model, *, input_tokens, output_tokens, cached_tokens, cache_write_tokens=0, cache_write_1h_tokens=0
):
    """USD for one answer from the AI_MODEL_PRICES table (per 1M tokens); 0 for a model staff marked free.

    `input_tokens` is all the input; of it, `cached_tokens` were read from the provider's prompt cache and
    `cache_write_tokens` written to it (`cache_write_1h_tokens` of those for an hour), each at its own rate."""
    entry = price_entry(provider, model)
    if entry is None:
        logger.warning("no AI price for model", extra={"provider": provider, "model": model})
        return Decimal(0)
    input_price = Decimal(str(entry.get("input", 0)))
    cached_price = Decimal(str(entry.get("cached_input", input_price)))
    # A cache write without a rate of its own is billed as input (OpenAI and the compatible APIs bill it so).
    write_price = Decimal(str(entry.get("cache_write", input_price)))
    write_1h_price = Decimal(str(entry.get("cache_write_1h", write_price)))
    output_price = Decimal(str(entry.get("output", 0)))
    cached = min(cached_tokens, input_tokens)
    written = min(cache_write_tokens, input_tokens - cached)
    written_1h = min(cache_write_1h_tokens, written)
    cost = (
        (input_tokens - cached - written) * input_price
        + cached * cached_price
        + (written - written_1h) * write_price
        + written_1h * write_1h_price
        + output_tokens * output_price
    ) / _MILLION
    return cost.quantize(Decimal("0.000001"))


def month_of(now=None):
    now = now or timezone.now()
    return now.date().replace(day=1)


# The monthly row's sums: what each request adds (the upsert) and what admin totals.
USAGE_SUMS = (
    "requests",
    "cached_requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_usd",
)


@functools.cache
def _pg_usage_sql():
    """The monthly row added to, or created by the month's first request: one upsert (aiusage_unique_key),
    built as the call log's roll-ups are (integrations.usage.upsert_sql: the amounts are number literals)."""
    keys = ["owner_id", "month", "provider", "model"]
    return upsert_sql(AiUsageMonthly._meta.db_table, keys, USAGE_SUMS, f"({', '.join(keys)})")


@functools.cache
def _pg_settle_sql():
    qn = connection.ops.quote_name
    return (
        f"UPDATE {qn(AiSpend._meta.db_table)} SET {qn('reserved_usd')} = GREATEST({qn('reserved_usd')} - %s, 0), "
        f"{qn('spent_usd')} = {qn('spent_usd')} + %s WHERE {qn('owner_id')} = %s AND {qn('month')} = %s "
        f"RETURNING {qn('spent_usd')}"
    )


def usage_record(
    *,
    owner_id,
    provider,
    model,
    input_tokens=0,
    output_tokens=0,
    cached_tokens=0,
    cache_write_tokens=0,
    cost_usd=0,
    cached=False,
    now=None,
):
    """Add one request to its monthly row: one UPDATE, an INSERT only for the month's first.

    On PostgreSQL both are one upsert, written once per process: every AI answer books here, and
    the ORM's compiled UPDATE cost ~2 ms more per request than the statement itself."""
    month = month_of(now)
    amounts = _amounts(input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_usd, cached)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(*_statement(amounts, owner_id, month, provider, model))
        return
    changes = {name: F(name) + amount for name, amount in amounts.items()}
    rows = AiUsageMonthly.objects.filter(owner_id=owner_id, month=month, provider=provider, model=model[:128])
    if rows.update(**changes):
        return
    try:
        with transaction.atomic():
            AiUsageMonthly.objects.create(
                owner_id=owner_id, month=month, provider=provider, model=model[:128], **amounts
            )
    except IntegrityError:
        rows.update(**changes)  # another request created the month's row first


def usage_statement(
    *,
    owner_id,
    provider,
    model,
    input_tokens=0,
    output_tokens=0,
    cached_tokens=0,
    cache_write_tokens=0,
    cost_usd=0,
    cached=False,
    now=None,
):
    """usage_record's PostgreSQL upsert as (sql, params), for a caller that sends it with others
    (integrations.aio.at_once)."""
    amounts = _amounts(input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_usd, cached)
    return _statement(amounts, owner_id, month_of(now), provider, model)


def _amounts(input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_usd, cached):
    """What one request adds to its monthly row, by USAGE_SUMS column (in that order)."""
    return dict(
        zip(
            USAGE_SUMS,
            (1, 1 if cached else 0, input_tokens, output_tokens, cached_tokens, cache_write_tokens, Decimal(cost_usd)),
            strict=True,
        )
    )


def _statement(amounts, owner_id, month, provider, model):
    return _pg_usage_sql().format(*map(sql_number, amounts.values())), [owner_id, month, provider, model[:128]]


def month_spent(owner_id, now=None):
    spent = AiUsageMonthly.objects.filter(owner_id=owner_id, month=month_of(now)).aggregate(s=Sum("cost_usd"))["s"]
    return spent or Decimal(0)


# A user's override is read on every completion: kept in the shared cache, forgotten in every
# process as soon as staff save or delete it (limits_forget, a signal receiver).
LIMITS_CACHE_SECONDS = 300


def _limits_key(owner_id):
    return f"ai:limits:{owner_id}"


def limits_keys(owner_id):
    """The cache keys user_limits reads (read with an API token's own, tokens.token_authenticate's `along`)."""
    return [_limits_key(owner_id)]


def _override(owner_id):
    override = read_along(_limits_key(owner_id))
    if override is NOT_READ:
        override = cache_best_effort("get", _limits_key(owner_id))
    if override is None:
        override = AiBudget.objects.filter(owner_id=owner_id).values("monthly_limit_usd", "max_tokens").first() or {}
        cache_best_effort("set", _limits_key(owner_id), override, LIMITS_CACHE_SECONDS)
    return override


def limits_forget(sender, instance, **kwargs):
    cache_best_effort("delete", _limits_key(instance.owner_id))


def user_limits(owner_id):
    """(monthly budget in USD, largest max_tokens) for a user: their override in admin, else the defaults."""
    override = _override(owner_id)
    limit = override.get("monthly_limit_usd")
    limit = Decimal(limit) if limit is not None else Decimal(settings.AI_USER_MONTHLY_BUDGET_USD)
    return limit, override.get("max_tokens") or settings.AI_USER_MAX_TOKENS


def budget_limit(owner_id):
    return user_limits(owner_id)[0]


# --- model checks -------------------------------------------------------------------


def priced_chain(chain, *, named):
    """The chain without models that have no price, unless staff marked them free.

    A model without a price would be booked at $0 and never touch the budget, so
    it is not called. When the client named the model itself (`named`), that is
    a 400; on a route, the entry is left out (and listed as skipped).
    """
    unpriced = [(p, m) for p, m in chain if price_entry(p, m) is None]
    if not unpriced:
        return chain, []
    free = set(
        AiFreeModel.objects.filter(
            provider__in={p for p, _ in unpriced}, model__in={m for _, m in unpriced}
        ).values_list("provider", "model")
    )
    refused = [(p, m) for p, m in unpriced if (p, m) not in free]
    if refused and named and len(refused) == len(chain):
        provider, model = refused[0]
        raise DomainError(
            400,
            "model_not_priced",
            f"{provider}/{model} has no price in the hub's price table, so its cost could not be counted "
            "against your budget; use a priced model, or ask staff to add its price or mark it free.",
            provider=provider,
            model=model,
        )
    skipped = [
        {
            "provider": p,
            "model": m,
            "error": "model_not_priced",
            "detail": "No price for this model; staff can add one or mark it free.",
        }
        for p, m in refused
    ]
    return [e for e in chain if e not in refused], skipped


def max_cost(chain, *, input_tokens, output_tokens, cache_ttl=None):
    """The dearest this request can be, over every model it may end up on: its input billed as plain input or
    all written to the provider's prompt cache, whichever costs more (Anthropic bills a five-minute cache write
    at 1.25x its input price), or, for a request that asked for the hour-long cache (`cache_ttl` "1h"), all
    written for an hour (2x), as such an answer is booked."""
    writes = [(0, 0), (input_tokens, 0)]
    if cache_ttl == "1h":
        writes.append((input_tokens, input_tokens))
    return max(
        (
            price(
                p,
                m,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_tokens=0,
                cache_write_tokens=w,
                cache_write_1h_tokens=w_1h,
            )
            for p, m in chain
            if price_entry(p, m) is not None
            for w, w_1h in writes
        ),
        default=Decimal(0),
    )


# --- budget reservations ---------------------------------------------------------------


class ErasureStarted(Exception):
    """The user's erasure has started (their account was deactivated after the request was authenticated): the
    caller refuses the request as it would be a moment later, signed out (integrations.auth.tokens.signed_out)."""


class Reservation:
    def __init__(self, *, owner_id, month, amount, limit, lease=None):
        self.owner_id = owner_id
        self.month = month
        self.amount = amount
        self.limit = limit
        self.lease = lease  # the web worker's slice of the budget the hold is from (ai.leases), or None
        self.settled = False


def _spend_rows(owner_id, month):
    return AiSpend.objects.filter(owner_id=owner_id, month=month)


def _ensure_spend_row(owner_id, month):
    """In the caller's transaction: the month's ledger row, started from the roll-up (a month's first request, or
    spend from before it)."""
    if _spend_rows(owner_id, month).exists():
        return
    try:
        with transaction.atomic():
            AiSpend.objects.create(owner_id=owner_id, month=month, spent_usd=month_spent(owner_id))
    except IntegrityError:
        pass  # a concurrent request created it


def budget_reserve(owner_id, amount, *, limit=None, now=None):
    """Hold `amount` of the user's monthly budget for a request, or refuse it with 402 (ErasureStarted for a user
    whose erasure has started).

    One conditional UPDATE: it succeeds only while spent + reserved + amount is
    within the limit, so concurrent requests cannot each spend the same remainder
    (PostgreSQL re-checks the condition on the row it waited for). The client
    waits on the hold's commit, so it does not wait for the disk flush: a hold
    lost in a PostgreSQL crash only frees budget
    (integrations.aio.commit_without_flush_wait). When it holds nothing (the
    month has no row yet, or no room) the slow way follows (_hold_slowly),
    which reads the row back only to explain a refusal.

    In a web worker that lends (ai.leases) the hold comes from the worker's slice of the user's budget when it
    has room, in memory; the slice is held (or grown) by the same conditional UPDATE."""
    limit = budget_limit(owner_id) if limit is None else limit
    month = month_of(now)
    amount = Decimal(amount)
    if leases.running():
        lease = leases.take(owner_id, month, amount, limit, lambda slice_: _hold(owner_id, month, slice_, limit))
        if lease is not None:
            return Reservation(owner_id=owner_id, month=month, amount=amount, limit=limit, lease=lease)
    if not _hold(owner_id, month, amount, limit):
        _hold_slowly(owner_id, month, amount, limit)
    return Reservation(owner_id=owner_id, month=month, amount=amount, limit=limit)


def _hold_slowly(owner_id, month, amount, limit):
    """The hold of a month the user may have no row for yet, or a refusal: in one transaction, the user's lock held
    shared and their erasure read (integrations.erasing), the month's row started if missing, the hold, and what
    a refusal reports.

    A user whose erasure has started gets no row: its AI part may have handed their months to the pseudonym
    already, and a row started now would be theirs after it (the request was authenticated just before the
    erasure deactivated the account): ErasureStarted, for the caller to refuse it as it would be a moment later.
    The hot path needs no check: a hold on a row the erasure has not handed on yet is handed on with it, and
    once it has, the UPDATE finds no row of the user's and comes here."""
    with transaction.atomic():
        commit_without_flush_wait()
        if pseudonyms_now([owner_id]):
            raise ErasureStarted
        _ensure_spend_row(owner_id, month)
        if _held_here(owner_id, month, amount, limit):
            return
        spent, reserved = budget_row(owner_id, month)
    _refuse(limit=limit, spent=spent, reserved=reserved, amount=amount)


@functools.cache
def _pg_hold_sql():
    qn = connection.ops.quote_name
    reserved, spent = qn("reserved_usd"), qn("spent_usd")
    return (
        f"UPDATE {qn(AiSpend._meta.db_table)} SET {reserved} = {reserved} + %s "
        f"WHERE {qn('owner_id')} = %s AND {qn('month')} = %s AND {spent} < %s AND {spent} <= %s - {reserved} "
        "RETURNING 1"
    )


def _hold(owner_id, month, amount, limit):
    """The conditional UPDATE; True when it held. Outside a transaction on PostgreSQL (the web server's
    request hop) one round trip with its commit (integrations.aio.at_once), instead of four and the ORM's
    query building."""
    if can_send_at_once():
        return at_once([(_pg_hold_sql(), [amount, owner_id, month, limit, limit - amount])])[0] is not None
    with transaction.atomic():
        commit_without_flush_wait()
        return _held_here(owner_id, month, amount, limit)


def _held_here(owner_id, month, amount, limit):
    """The conditional UPDATE in the caller's transaction; True when it held."""
    fits = dict(spent_usd__lt=limit, spent_usd__lte=Value(limit - amount) - F("reserved_usd"))
    return bool(_spend_rows(owner_id, month).filter(**fits).update(reserved_usd=F("reserved_usd") + amount))


def budget_extend(reservation, amount):
    """Hold `amount` more for a request that holds `reservation` (the same month's row, the same conditional
    UPDATE as budget_reserve); False, with the hold as it was, when the budget has no room for it."""
    amount = Decimal(amount)
    if amount <= 0:
        return True

    def hold(more):
        return _hold(reservation.owner_id, reservation.month, more, reservation.limit)

    if not (leases.extend(reservation.lease, amount, hold) if reservation.lease is not None else hold(amount)):
        return False
    reservation.amount += amount
    return True


def budget_row(owner_id, month):
    """(spent, reserved) of a user's month, as a refusal reports them."""
    row = _spend_rows(owner_id, month).values("spent_usd", "reserved_usd").get()
    return row["spent_usd"], row["reserved_usd"]


def _refuse(*, limit, spent, reserved, amount):
    extra = {
        "limit_usd": str(limit),
        "spent_usd": str(spent.quantize(Decimal("0.000001"))),
        "reserved_usd": str(reserved.quantize(Decimal("0.000001"))),
        "request_max_usd": str(amount.quantize(Decimal("0.000001"))),
    }
    if spent >= limit:
        detail = (
            f"Your AI budget of ${limit:.2f} for this month is used up (${spent:.2f} spent); "
            "it renews on the first of next month, or ask an administrator to raise it."
        )
    else:
        held = "held for your requests still running"
        if leases.running():
            idle = settings.AI_BUDGET_LEASE_IDLE_SECONDS
            held += f" (and set aside by the hub's web workers for your next ones, until idle for {idle:g} s)"
        detail = (
            f"This request could cost up to ${amount:.4f}; with ${spent:.4f} spent and ${reserved:.4f} {held}, "
            f"that would pass your AI budget of ${limit:.2f} for this month. "
            "Ask for fewer max_tokens, use a cheaper model, or retry when your running requests finish."
        )
    raise DomainError(402, "budget_exceeded", detail, **extra)


def budget_settle(reservation, cost=0):
    """Replace the hold with what the request really cost (0 when nothing was answered).

    Returns the month's spend after it when the request cost something (else None)."""
    if reservation is None or reservation.settled:
        return None
    if connection.vendor == "postgresql":
        # The UPDATE and the read of the new spend in one statement (RETURNING), written once per process.
        with connection.cursor() as cursor:
            cursor.execute(*settle_statement(reservation, cost))
            return settled(reservation, cursor.fetchone(), cost)
    rows = _spend_rows(reservation.owner_id, reservation.month)
    rows.update(
        reserved_usd=Greatest(F("reserved_usd") - _released(reservation, cost), Value(Decimal(0))),
        spent_usd=F("spent_usd") + Decimal(cost),
    )
    settled(reservation, None, cost)
    return rows.values_list("spent_usd", flat=True).first() if cost > 0 else None


def _released(reservation, cost):
    """What settling takes off the row's reserved_usd: the request's hold, or (from a lease) its cost, the lease
    keeping the rest for the user's next requests."""
    return Decimal(cost) if reservation.lease is not None else reservation.amount


def settle_statement(reservation, cost):
    """budget_settle's PostgreSQL statement as (sql, params); `settled` takes its result row."""
    return _pg_settle_sql(), [_released(reservation, cost), Decimal(cost), reservation.owner_id, reservation.month]


def settled(reservation, row, cost):
    """The hold as settled by settle_statement's result `row`: budget_settle's answer.

    Marked settled at once (a caller whose transaction then rolls back unmarks it: Booking.answered); a
    lease's own accounting follows the commit (ai.leases.settled), so a rolled-back settlement, settled again
    later (Booking.abandon), frees the lease's share once."""
    reservation.settled = True
    if reservation.lease is not None:
        transaction.on_commit(functools.partial(leases.settled, reservation.lease, reservation.amount, Decimal(cost)))
    return row[0] if row is not None and cost > 0 else None


def give_back_statement(owner_id, month, amount):
    """A lease given back (ai.leases.give_back): `amount` off the row's reserved_usd."""
    return _pg_give_back_sql(), [amount, owner_id, month]


@functools.cache
def _pg_give_back_sql():
    qn = connection.ops.quote_name
    reserved = qn("reserved_usd")
    return (
        f"UPDATE {qn(AiSpend._meta.db_table)} SET {reserved} = GREATEST({reserved} - %s, 0) "
        f"WHERE {qn('owner_id')} = %s AND {qn('month')} = %s"
    )


def budget_after(owner_id, *, limit, before, cost, now=None):
    """Alert when this request's cost carried the user's spend over the alert threshold or the budget."""
    if cost <= 0 or limit <= 0:
        return
    now = now or timezone.now()
    after = before + cost
    for pct, severity in ((100, Alert.Severity.CRITICAL), (settings.AI_BUDGET_ALERT_PERCENT, Alert.Severity.WARNING)):
        threshold = limit * pct / 100
        if before < threshold <= after:
            alert_raise(
                kind=Alert.Kind.BUDGET_THRESHOLD,
                severity=severity,
                message=f"AI spend for user {owner_id} is ${after:.4f} of ${limit:.2f} ({pct} % threshold) in {now:%Y-%m}.",
                dedupe_key=f"ai_budget:{owner_id}:{now:%Y-%m}:{pct}",
            )
            return


def usage_for_user(*, owner, now=None):
    """This month's AI tokens and cost for one user, by provider and model (from the roll-up)."""
    month = month_of(now)
    rows = list(
        AiUsageMonthly.objects.filter(owner=owner, month=month)
        .order_by("provider", "model")
        .values(
            "provider",
            "model",
            "requests",
            "cached_requests",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "cost_usd",
        )
    )
    total = sum((r["cost_usd"] for r in rows), Decimal(0))
    limit = budget_limit(owner.pk)
    return {
        "month": f"{month:%Y-%m}",
        "budget_usd": limit,
        "spent_usd": total,
        "remaining_usd": max(Decimal(0), limit - total),
        "input_tokens": sum(r["input_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "cached_tokens": sum(r["cached_tokens"] for r in rows),
        "cache_write_tokens": sum(r["cache_write_tokens"] for r in rows),
        "requests": sum(r["requests"] for r in rows),
        "by_model": rows,
    }
