"""Roll-ups, budgets and failure-rate alerts, kept current as calls are recorded."""

import datetime as dt
import time
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from .alerts import alert_raise
from .models import LATENCY_BUCKETS_MS, Alert, Budget, ProviderCall, UsageRollup


def _bucket(latency_ms):
    for i, bound in enumerate(LATENCY_BUCKETS_MS):
        if latency_ms <= bound:
            return i
    return len(LATENCY_BUCKETS_MS)


def units_total(units):
    return sum(Decimal(str(v)) for v in (units or {}).values() if isinstance(v, (int, float, Decimal)))


_ROLLUP_SUMS = ["errors", "units", "cost_usd", "latency_ms_sum"] + [
    f"lat_b{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1)
]


def _pg_call_and_rollup_sql(with_owner):
    qn = connection.ops.quote_name
    call_fields = [f for f in ProviderCall._meta.concrete_fields if not f.primary_key]
    rollup = UsageRollup._meta.db_table
    conflict = "(hour, provider, owner_id)" if with_owner else "(hour, provider) WHERE owner_id IS NULL"
    cols = ["hour", "provider", "owner_id", "calls", *_ROLLUP_SUMS]
    updates = ", ".join(f"{qn(c)} = {qn(rollup)}.{qn(c)} + EXCLUDED.{qn(c)}" for c in ["calls", *_ROLLUP_SUMS])
    return (
        f"WITH c AS (INSERT INTO {qn(ProviderCall._meta.db_table)} ({', '.join(qn(f.column) for f in call_fields)}) "
        f"VALUES ({', '.join(['%s'] * len(call_fields))}) RETURNING id) "
        f"INSERT INTO {qn(rollup)} ({', '.join(qn(c) for c in cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
        f"ON CONFLICT {conflict} DO UPDATE SET {updates} "
        "RETURNING (SELECT id FROM c)"
    ), call_fields


def call_record(call, *, ok):
    """Insert the call-log row and add it to its hourly roll-up.

    On PostgreSQL this is one statement (a CTE insert plus an upsert), the
    cheapest way to keep both exact on the hot path of every provider call;
    elsewhere (SQLite under `make run`) the ORM does the same in two steps.
    """
    if connection.vendor != "postgresql":
        call.save(force_insert=True)
        rollup_record(
            provider=call.provider,
            owner_id=call.owner_id,
            at=call.created_at,
            ok=ok,
            latency_ms=call.latency_ms,
            units=call.units,
            cost_usd=call.cost_usd,
        )
        return call
    sql, call_fields = _pg_call_and_rollup_sql(call.owner_id is not None)
    call_values = [f.get_db_prep_save(f.pre_save(call, add=True), connection) for f in call_fields]
    bucket = _bucket(call.latency_ms)
    rollup_values = [
        call.created_at.replace(minute=0, second=0, microsecond=0),
        call.provider,
        call.owner_id,
        1,
        0 if ok else 1,
        units_total(call.units),
        call.cost_usd,
        call.latency_ms,
        *[1 if i == bucket else 0 for i in range(len(LATENCY_BUCKETS_MS) + 1)],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, call_values + rollup_values)
        call.pk = cursor.fetchone()[0]
    call._state.adding = False
    call._state.db = connection.alias
    return call


def rollup_record(*, provider, owner_id, at, ok, latency_ms, units, cost_usd):
    """Add one call to its hourly row: one UPDATE, an INSERT only for the hour's first call."""
    hour = at.replace(minute=0, second=0, microsecond=0)
    bucket = f"lat_b{_bucket(latency_ms)}"
    changes = {
        "calls": F("calls") + 1,
        "errors": F("errors") + (0 if ok else 1),
        "units": F("units") + units_total(units),
        "cost_usd": F("cost_usd") + cost_usd,
        "latency_ms_sum": F("latency_ms_sum") + latency_ms,
        bucket: F(bucket) + 1,
    }
    rows = UsageRollup.objects.filter(hour=hour, provider=provider, owner_id=owner_id)
    if rows.update(**changes):
        return
    try:
        with transaction.atomic():
            UsageRollup.objects.create(
                hour=hour,
                provider=provider,
                owner_id=owner_id,
                calls=1,
                errors=0 if ok else 1,
                units=units_total(units),
                cost_usd=cost_usd,
                latency_ms_sum=latency_ms,
                **{bucket: 1},
            )
    except IntegrityError:
        rows.update(**changes)  # another process created the hour's row first


def month_start(now=None):
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def failure_rate_check(*, provider, now=None):
    """After a failure: alert when this hour's error rate for the provider crosses the threshold."""
    now = now or timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    totals = UsageRollup.objects.filter(hour=hour, provider=provider).aggregate(c=Sum("calls"), e=Sum("errors"))
    calls, errors = totals["c"] or 0, totals["e"] or 0
    if calls >= settings.FAILURE_ALERT_MIN_CALLS and errors / calls >= settings.FAILURE_ALERT_RATE:
        alert_raise(
            kind=Alert.Kind.PROVIDER_FAILURE_RATE,
            provider=provider,
            severity=Alert.Severity.CRITICAL,
            message=f"{provider}: {errors} of {calls} calls failed this hour ({errors / calls:.0%}).",
        )


# provider -> (loaded at, budgets). Kept in process memory, not the shared
# cache: it is read on every priced call, and a Redis round trip there costs
# more than the whole lookup. Saving a Budget clears this process's copy; other
# processes see the change within BUDGET_CACHE_SECONDS.
_budget_cache = {}
BUDGET_CACHE_SECONDS = 60


def _budgets(provider):
    loaded = _budget_cache.get(provider)
    now = time.monotonic()
    if loaded is None or now - loaded[0] > BUDGET_CACHE_SECONDS:
        budgets = list(Budget.objects.filter(provider=provider).values("owner_id", "monthly_limit_usd"))
        loaded = _budget_cache[provider] = (now, budgets)
    return loaded[1]


def budgets_forget(**kwargs):
    _budget_cache.clear()


def budget_check(*, provider, owner_id, now=None):
    """After a call that cost money: alert at 80 % and 100 % of the month's budget."""
    now = now or timezone.now()
    for budget in _budgets(provider):
        if budget["owner_id"] is not None and budget["owner_id"] != owner_id:
            continue
        rows = UsageRollup.objects.filter(provider=provider, hour__gte=month_start(now))
        if budget["owner_id"] is not None:
            rows = rows.filter(owner_id=budget["owner_id"])
        spent = rows.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)
        limit = Decimal(budget["monthly_limit_usd"])
        if limit <= 0:
            continue
        for pct in (100, 80):
            if spent >= limit * pct / 100:
                who = f"owner {budget['owner_id']}" if budget["owner_id"] else "all owners"
                alert_raise(
                    kind=Alert.Kind.BUDGET_THRESHOLD,
                    provider=provider,
                    severity=Alert.Severity.CRITICAL if pct == 100 else Alert.Severity.WARNING,
                    message=f"{provider} spend for {who} is ${spent:.2f} of ${limit:.2f} ({pct} % threshold) in {now:%Y-%m}.",
                    dedupe_key=f"budget:{provider}:{budget['owner_id']}:{now:%Y-%m}:{pct}",
                )
                break


def usage_for_owner(*, owner, now=None):
    """This month's calls, errors, units and cost for one owner, by provider (from the roll-up)."""
    start = month_start(now)
    rows = (
        UsageRollup.objects.filter(owner=owner, hour__gte=start)
        .values("provider")
        .annotate(calls=Sum("calls"), errors=Sum("errors"), units=Sum("units"), cost_usd=Sum("cost_usd"))
        .order_by("provider")
    )
    providers = list(rows)
    total = sum((r["cost_usd"] for r in providers), Decimal(0))
    return {"month": f"{start:%Y-%m}", "since": start, "total_cost_usd": total, "providers": providers}


def percentile_from_hist(counts, pct):
    """Upper bound (ms) of the histogram bucket holding the pct-th percentile; None if empty."""
    total = sum(counts)
    if not total:
        return None
    threshold = total * pct / 100
    running = 0
    for i, count in enumerate(counts):
        running += count
        if running >= threshold:
            return LATENCY_BUCKETS_MS[i] if i < len(LATENCY_BUCKETS_MS) else float("inf")
    return float("inf")


def dashboard_rows(*, hours=24, now=None):
    """Per provider for the last `hours`: calls, error rate, p95 latency (bucket bound), cost."""
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=hours - 1)
    bucket_fields = [f"lat_b{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1)]
    rows = (
        UsageRollup.objects.filter(hour__gte=since)
        .values("provider")
        .annotate(
            calls=Sum("calls"),
            errors=Sum("errors"),
            cost_usd=Sum("cost_usd"),
            latency_ms_sum=Sum("latency_ms_sum"),
            **{f: Sum(f) for f in bucket_fields},
        )
        .order_by("provider")
    )
    out = []
    for r in rows:
        counts = [r[f] or 0 for f in bucket_fields]
        calls = r["calls"] or 0
        out.append(
            {
                "provider": r["provider"],
                "calls": calls,
                "errors": r["errors"] or 0,
                "error_rate": (r["errors"] or 0) / calls if calls else 0.0,
                "avg_latency_ms": (r["latency_ms_sum"] or 0) / calls if calls else None,
                "p95_latency_ms": percentile_from_hist(counts, 95),
                "cost_usd": r["cost_usd"] or Decimal(0),
            }
        )
    return out
