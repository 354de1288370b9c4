"""The staff console's figures: the overview per provider, the money page and the charts' series.

Everything here reads the hourly roll-ups (ProviderRollup for per-provider
figures, UsageRollup for per-owner spend), never a scan of the call log: a
30-day window is at most 720 rows per provider whatever the traffic. A window
is exact to the second: whole hours from the roll-up, plus the calls of the
window's first, partial hour from the call log (at most one hour of rows).
"""

import datetime as dt
import heapq
import math
import uuid
from collections import defaultdict
from decimal import Decimal

from django.db import connection
from django.db.models import Sum
from django.db.models.functions import TruncDay
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from .models import Budget, ProviderCall, ProviderRollup, UsageRollup
from .registry import all_providers
from .units import UNIT_COLUMNS, UNITS, units_split
from .usage import LATENCY_COLUMNS, latency_bucket, latency_percentile, month_start, stats_from_sums

WINDOWS = {"1h": ("last 1 h", 1), "24h": ("last 24 h", 24), "7d": ("last 7 d", 24 * 7), "30d": ("last 30 d", 24 * 30)}
DEFAULT_WINDOW = "24h"
CIRCUIT_LABELS = {"closed": "Closed", "open": "Open", "half_open": "Half-open (probing)"}
OUTCOMES = [o.value for o in ProviderCall.Outcome]
_SUMS = ["calls", *OUTCOMES, "cost_usd", "latency_ms_sum", *UNIT_COLUMNS, *LATENCY_COLUMNS]

# Money by kind of service, from the provider's group in the registry. A provider in no group here
# (the registry's "default", or one no longer registered whose rows remain) is "Other", never folded
# into a kind it is not: the audit archive's S3 bill once showed as sign-in.
SERVICE_KINDS = {
    "payments": "Payment fees",
    "messaging": "SMS, voice and mail",
    "ai": "AI tokens",
    "documents": "Storage and transfer",
    "scheduling": "Calendar and video",
    "travel": "Flight search",
    "oauth": "Sign-in (OAuth)",
    "operations": "Operations (alerts, audit archive)",
}


def window_key(value):
    return value if value in WINDOWS else DEFAULT_WINDOW


def window_since(key, now=None):
    now = now or timezone.now()
    return now - dt.timedelta(hours=WINDOWS[window_key(key)][1])


def _hour(value):
    return value.replace(minute=0, second=0, microsecond=0)


_INDEX = {c: i for i, c in enumerate(_SUMS)}
_MONEY = {_INDEX["cost_usd"], *(_INDEX[u.column] for u in UNITS if u.money)}
_FLOAT = {_INDEX["latency_ms_sum"]}


def _empty():
    return [Decimal(0) if i in _MONEY else 0.0 if i in _FLOAT else 0 for i in range(len(_SUMS))]


def _as_dict(values):
    return dict(zip(_SUMS, values, strict=True))


def _day(value):
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


# An hour's or a day's per-provider totals never change once it is over
# (every call is written with the time it was written), so windows read closed
# hours (1 h, 24 h) and closed days (7 d, 30 d) from the cache: one get_many
# instead of summing ~90 roll-up columns again on every page view. SETTLE
# covers calls still being written as the period ends.
DAY_CACHE_SECONDS = 40 * 86400
SETTLE = dt.timedelta(minutes=15)


def _grouped(start, end, by):
    """{(hour or UTC day, provider): [sums in _SUMS order]} for roll-up hours in [start, end)."""
    if start >= end:
        return {}
    if connection.vendor == "postgresql":
        # Raw SQL: ~90 sums per group, and the ORM would turn every bigint SUM
        # (a numeric in PostgreSQL) into a Decimal and back into an int.
        qn = connection.ops.quote_name
        key = "hour" if by == "hour" else "date_trunc('day', hour, 'UTC')"
        sums = ", ".join(
            f"SUM({qn(c)})" if _INDEX[c] in _MONEY or _INDEX[c] in _FLOAT else f"SUM({qn(c)})::bigint" for c in _SUMS
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {key}, provider, {sums} FROM {qn(ProviderRollup._meta.db_table)} "
                "WHERE hour >= %s AND hour < %s GROUP BY 1, 2",
                [start, end],
            )
            return {(row[0], row[1]): list(row[2:]) for row in cursor.fetchall()}
    rows = ProviderRollup.objects.filter(hour__gte=start, hour__lt=end)
    if by == "day":
        rows = rows.annotate(bin=TruncDay("hour", tzinfo=dt.UTC))
    group = "hour" if by == "hour" else "bin"
    rows = rows.values(group, "provider").annotate(**{f"s_{c}": Sum(c) for c in _SUMS}).order_by()
    return {(r[group], r["provider"]): [r[f"s_{c}"] or 0 for c in _SUMS] for r in rows}


def console_cache_reset():
    """Forget every cached hour and day: for whoever writes calls into the past (seed_demo, a backfill)."""
    from django.core.cache import cache

    cache.set("console:generation", uuid.uuid4().hex[:8], None)


def _generation():
    from django.core.cache import cache

    generation = cache.get("console:generation")
    if generation is None:
        generation = uuid.uuid4().hex[:8]
        cache.add("console:generation", generation, None)
        generation = cache.get("console:generation", generation)
    return generation


def _closed_bins(bins, by):
    """{(bin, provider): sums} for closed hours or days, from the cache, computing (and caching) the missing ones."""
    from django.core.cache import cache

    if not bins:
        return {}
    step = dt.timedelta(hours=1) if by == "hour" else dt.timedelta(days=1)
    generation = _generation()

    def key_of(at):
        return f"console:{generation}:{by}:{at:%Y-%m-%dT%H}"

    keys = {key_of(b): b for b in bins}
    found = cache.get_many(list(keys))
    missing = sorted(b for k, b in keys.items() if k not in found)
    if missing:
        computed = {key_of(b): {} for b in missing}
        for (at, provider), values in _grouped(missing[0], missing[-1] + step, by).items():
            if key_of(at) in computed:
                computed[key_of(at)][provider] = values
        cache.set_many(computed, DAY_CACHE_SECONDS)
        found.update(computed)
    return {(b, provider): values for key, b in keys.items() for provider, values in (found.get(key) or {}).items()}


def _add_into(cells, key, values):
    current = cells.get(key)
    cells[key] = list(values) if current is None else [a + b for a, b in zip(current, values, strict=True)]


def _partial_hour_sql(since, until):
    """[(provider, outcome, bucket, calls, cost, latency sum, *unit sums)] for calls in [since, until) (PostgreSQL)."""
    qn = connection.ops.quote_name
    # bisect_left over LATENCY_BOUNDS_MS (2 ** (i / 4)): the first bound >= the latency.
    last = len(LATENCY_COLUMNS) - 1
    bucket = f"CASE WHEN latency_ms <= 1 THEN 0 ELSE LEAST(CEIL(4 * LN(latency_ms) / LN(2)), {last})::int END"
    units = []
    for unit in UNITS:
        parts = " + ".join(
            f"CASE WHEN jsonb_typeof(units -> '{k}') = 'number' THEN (units ->> '{k}')::numeric ELSE 0 END"
            for k in unit.keys
        )
        units.append(f"SUM({parts})" if unit.money else f"FLOOR(SUM({parts}))::bigint")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT provider, outcome, {bucket}, COUNT(*), SUM(cost_usd), SUM(latency_ms), {', '.join(units)} "
            f"FROM {qn(ProviderCall._meta.db_table)} WHERE created_at >= %s AND created_at < %s GROUP BY 1, 2, 3",
            [since, until],
        )
        return cursor.fetchall()


def _partial_hour(cells, bin_at, since, until):
    """Calls in [since, until) (less than an hour) from the call log, added to the bin at `bin_at`."""
    if since >= until:
        return
    extra = {}

    def row_for(provider):
        if provider not in extra:
            extra[provider] = _empty()
        return extra[provider]

    if connection.vendor == "postgresql":
        for provider, outcome, bucket, n, cost, latency_sum, *unit_sums in _partial_hour_sql(since, until):
            row = row_for(provider)
            row[_INDEX["calls"]] += n
            row[_INDEX[outcome]] += n
            row[_INDEX["cost_usd"]] += cost or 0
            row[_INDEX["latency_ms_sum"]] += latency_sum or 0
            row[_INDEX[f"l{bucket}"]] += n
            for unit, amount in zip(UNITS, unit_sums, strict=True):
                row[_INDEX[unit.column]] += amount or 0
    else:
        partial = ProviderCall.objects.filter(created_at__gte=since, created_at__lt=until)
        for provider, outcome, latency_ms, cost, units in partial.values_list(
            "provider", "outcome", "latency_ms", "cost_usd", "units"
        ).iterator():
            row = row_for(provider)
            row[_INDEX["calls"]] += 1
            row[_INDEX[outcome]] += 1
            row[_INDEX["cost_usd"]] += cost
            row[_INDEX["latency_ms_sum"]] += latency_ms
            row[_INDEX[f"l{latency_bucket(latency_ms)}"]] += 1
            for column, amount in units_split(units).items():
                row[_INDEX[column]] += amount
    for provider, values in extra.items():
        _add_into(cells, (bin_at, provider), values)


def window_cells(window, now=None):
    """The window's figures per (bin, provider), exact to the second: (bin size, bins, cells).

    1 h and 24 h windows are binned by hour, 7 d and 30 d by UTC day. Whole
    hours come from ProviderRollup, closed days from the day cache, and the
    calls of the window's first, partial hour from the call log. Each cell is
    a list of sums in _SUMS order.
    """
    now = now or timezone.now()
    window = window_key(window)
    since = window_since(window, now)
    first_full = _hour(since) if since == _hour(since) else _hour(since) + dt.timedelta(hours=1)
    after_now = now + dt.timedelta(microseconds=1)
    if WINDOWS[window][1] <= 24:
        bins, at = [], _hour(since)
        while at <= now:
            bins.append(at)
            at += dt.timedelta(hours=1)
        closed = [h for h in bins if h >= first_full and h + dt.timedelta(hours=1) <= now - SETTLE]
        cells = {k: list(v) for k, v in _closed_bins(closed, "hour").items()}
        open_from = closed[-1] + dt.timedelta(hours=1) if closed else first_full
        for key, values in _grouped(open_from, after_now, "hour").items():
            _add_into(cells, key, values)
        _partial_hour(cells, _hour(since), since, min(first_full, now))
        return "hour", bins, cells
    first_day, today = _day(since), _day(now)
    bins = [first_day + dt.timedelta(days=i) for i in range((today - first_day).days + 1)]
    closed = [d for d in bins[1:] if d + dt.timedelta(days=1) <= now - SETTLE]
    cells = {k: list(v) for k, v in _closed_bins(closed, "day").items()}
    open_from = closed[-1] + dt.timedelta(days=1) if closed else first_day + dt.timedelta(days=1)
    # The first day from its first whole hour, and the days not closed yet, from the hourly roll-up.
    for key, values in _grouped(first_full, first_day + dt.timedelta(days=1), "day").items():
        _add_into(cells, key, values)
    for key, values in _grouped(max(open_from, first_full), after_now, "day").items():
        _add_into(cells, key, values)
    _partial_hour(cells, first_day, since, min(first_full, now))
    return "day", bins, cells


def provider_sums(cells):
    """{provider: [sums]} over every bin."""
    out = {}
    for (_, provider), values in cells.items():
        _add_into(out, provider, values)
    return out


def overview(*, window=DEFAULT_WINDOW, now=None, cells=None):
    """Rows per registered provider (plus any other provider with calls) and a totals row."""
    now = now or timezone.now()
    window = window_key(window)
    since = window_since(window, now)
    if cells is None:
        cells = window_cells(window, now)
    sums = {provider: _as_dict(values) for provider, values in provider_sums(cells[2]).items()}
    from . import breaker

    providers = all_providers()
    known = {p.name for p in providers}
    circuits = breaker.states([p.name for p in providers])
    rows = []
    for spec in providers:
        missing = spec.missing()
        rows.append(
            {
                "name": spec.name,
                "label": spec.label,
                "configured": not missing,
                "missing": missing,
                "circuit": circuits[spec.name],
                **stats_from_sums(sums.get(spec.name) or _as_dict(_empty())),
            }
        )
    for name in sorted(set(sums) - known):  # calls to a provider since removed from the registry
        rows.append(
            {"name": name, "label": name, "configured": False, "missing": [], "circuit": "closed"}
            | stats_from_sums(sums[name])
        )
    base = reverse("admin:integrations_providercall_changelist")
    for row in rows:
        row["circuit_label"] = CIRCUIT_LABELS.get(row["circuit"], row["circuit"])
        # The cells' links, built here once rather than by a template tag per cell.
        calls = f"{base}?{urlencode({'provider': row['name'], 'since': window})}"
        row["links"] = {
            "calls": calls,
            "failed": f"{calls}&outcome=failed",
            "slowest": f"{calls}&o=-7",
            "costliest": f"{calls}&o=-8",
        }
    # Providers with traffic first (busiest first), then the quiet ones in registry order.
    rows.sort(key=lambda r: (-r["calls"], not r["configured"]))
    total = _empty()
    for values in provider_sums(cells[2]).values():
        total = [a + b for a, b in zip(total, values, strict=True)]
    return {
        "window": window,
        "window_label": WINDOWS[window][0],
        "since": since,
        "now": now,
        "rows": rows,
        "total": stats_from_sums(_as_dict(total)),
    }


# --- Money ---------------------------------------------------------------


def _month_bounds(month, now):
    """(start, end, is_current) of a month given as "YYYY-MM" (default: this month)."""
    current = month_start(now)
    start = current
    if month:
        try:
            year, number = (int(x) for x in month.split("-"))
            start = current.replace(year=year, month=number)
        except (ValueError, TypeError):
            start = current
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end, start == current


def _by_provider_cost(start, end):
    rows = (
        ProviderRollup.objects.filter(hour__gte=start, hour__lt=end)
        .values("provider")
        .annotate(cost=Sum("cost_usd"), calls=Sum("calls"))
        .order_by()
    )
    return {r["provider"]: (r["cost"] or Decimal(0), r["calls"] or 0) for r in rows}


def money(*, month=None, now=None, top=10):
    """Spend per provider and per kind of service this month vs last month, the projection, budgets, top spenders."""
    now = now or timezone.now()
    start, end, current = _month_bounds(month, now)
    previous_start = (start - dt.timedelta(days=1)).replace(day=1)
    this = _by_provider_cost(start, end)
    last = _by_provider_cost(previous_start, start)
    specs = {p.name: p for p in all_providers()}
    month_seconds = (end - start).total_seconds()
    elapsed = (min(now, end) - start).total_seconds() if current else month_seconds
    factor = Decimal(month_seconds / elapsed) if current and elapsed > 0 else Decimal(1)

    budgets = {}
    for b in Budget.objects.filter(owner__isnull=True):
        budgets[b.provider] = b.monthly_limit_usd

    providers = []
    for name in sorted(set(this) | set(last) | set(budgets), key=lambda n: -(this.get(n, (0, 0))[0])):
        spent, calls = this.get(name, (Decimal(0), 0))
        limit = budgets.get(name)
        projected = spent * factor
        providers.append(
            {
                "name": name,
                "label": specs[name].label if name in specs else name,
                "kind": SERVICE_KINDS.get(specs[name].group if name in specs else "", "Other"),
                "spent": spent,
                "calls": calls,
                "last": last.get(name, (Decimal(0), 0))[0],
                "projected": projected,
                "budget": limit,
                "used": float(spent / limit) if limit else None,
                "projected_used": float(projected / limit) if limit else None,
            }
        )
    kinds = defaultdict(lambda: {"spent": Decimal(0), "last": Decimal(0), "projected": Decimal(0)})
    for p in providers:
        for key in ("spent", "last", "projected"):
            kinds[p["kind"]][key] += p[key]
    total = sum((p["spent"] for p in providers), Decimal(0))
    last_total = sum((p["last"] for p in providers), Decimal(0))
    # Last month up to the same point, so "so far" compares like with like.
    same_point = previous_start + (min(now, end) - start) if current else start
    last_so_far = ProviderRollup.objects.filter(hour__gte=previous_start, hour__lt=min(same_point, start)).aggregate(
        s=Sum("cost_usd")
    )["s"] or Decimal(0)
    return {
        "month": f"{start:%Y-%m}",
        "month_label": f"{start:%B %Y}",
        "previous_month": f"{previous_start:%Y-%m}",
        "previous_label": f"{previous_start:%B %Y}",
        "next_month": f"{end:%Y-%m}" if end <= month_start(now) else None,
        "current": current,
        "start": start,
        "end": end,
        "total": total,
        "last_total": last_total,
        "last_so_far": last_so_far,
        "projected": total * factor,
        "providers": providers,
        "kinds": sorted(({"kind": k, **v} for k, v in kinds.items()), key=lambda k: -k["spent"]),
        "owner_budgets": owner_budgets(start=start, end=end),
        "top_spenders": top_spenders(start=start, end=end, limit=top, now=now),
    }


MICRO = Decimal("0.000001")


def _owner_totals(start, end):
    """{owner_id: (cost in millionths of a dollar, calls)} from the per-owner roll-up for hours in [start, end).

    Integers, so a cached day unpickles and adds up fast (cost_usd has six decimals: exact).
    """
    if start >= end:
        return {}
    rows = (
        UsageRollup.objects.filter(hour__gte=start, hour__lt=end, owner__isnull=False)
        .values_list("owner_id")
        .annotate(cost=Sum("cost_usd"), calls=Sum("calls"))
        .order_by()
    )
    return {owner: (int((cost or 0) / MICRO), calls or 0) for owner, cost, calls in rows}


def _owner_days(days):
    """[{owner_id: (micros, calls)}] for closed days, from the cache (computed once per day)."""
    from django.core.cache import cache

    generation = _generation()
    keys = [f"console:{generation}:owners:{d:%Y-%m-%d}" for d in days]
    found = cache.get_many(keys)
    fresh = {}
    for key, d in zip(keys, days, strict=True):
        if key not in found:
            found[key] = fresh[key] = _owner_totals(d, d + dt.timedelta(days=1))
    if fresh:
        cache.set_many(fresh, DAY_CACHE_SECONDS)
    return [found[k] for k in keys]


def top_spenders(*, start, end, limit=10, now=None):
    """The owners who spent most in [start, end): cost and calls, from the per-owner roll-up.

    Closed days come from the day cache; the days still open are summed live.
    """
    from django.contrib.auth import get_user_model

    now = now or timezone.now()
    days, day = [], _day(start)
    while day + dt.timedelta(days=1) <= min(end, now - SETTLE):
        days.append(day)
        day += dt.timedelta(days=1)
    cost, calls = defaultdict(int), defaultdict(int)
    for per_owner in [*_owner_days(days), _owner_totals(day, end)]:
        for owner_id, (micros, n) in per_owner.items():
            cost[owner_id] += micros
            calls[owner_id] += n
    ranked = heapq.nlargest(limit, (o for o in cost if cost[o] > 0), key=lambda o: (cost[o], -o))
    users = get_user_model().objects.in_bulk(ranked)
    return [{"owner": users.get(o), "owner_id": o, "cost": Decimal(cost[o]) * MICRO, "calls": calls[o]} for o in ranked]


def owner_budgets(*, start, end):
    budgets = list(Budget.objects.filter(owner__isnull=False).select_related("owner")[:50])
    out = []
    for b in budgets:
        spent = UsageRollup.objects.filter(
            owner_id=b.owner_id, provider=b.provider, hour__gte=start, hour__lt=end
        ).aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)
        out.append(
            {"budget": b, "spent": spent, "used": float(spent / b.monthly_limit_usd) if b.monthly_limit_usd else None}
        )
    return out


# --- Chart series ---------------------------------------------------------


def chart_window(window):
    """Charts show hours for the last 24 h (also when the table shows the last hour), else days."""
    window = window_key(window)
    return "24h" if window == "1h" else window


def series_calls(window, now=None, data=None):
    """Calls and failures per bin."""
    size, bins, cells = data or window_cells(chart_window(window), now)
    index = {b: i for i, b in enumerate(bins)}
    calls, failures = [0] * len(bins), [0] * len(bins)
    i_calls, i_fail = _INDEX["calls"], [_INDEX[o] for o in ("error", "rate_limited", "timeout")]
    for (at, _), v in cells.items():
        if at in index:
            calls[index[at]] += v[i_calls]
            failures[index[at]] += sum(v[i] for i in i_fail)
    return {"size": size, "bins": bins, "calls": calls, "failures": failures}


def series_cost(window="30d", now=None, data=None):
    """Cost per bin, per provider (for a stacked chart)."""
    size, bins, cells = data or window_cells(chart_window(window), now)
    index = {b: i for i, b in enumerate(bins)}
    per = defaultdict(lambda: [Decimal(0)] * len(bins))
    i_cost = _INDEX["cost_usd"]
    for (at, provider), v in cells.items():
        if at in index and v[i_cost]:
            per[provider][index[at]] += v[i_cost]
    order = sorted(per, key=lambda p: -sum(per[p]))
    return {"size": size, "bins": bins, "series": [(p, per[p]) for p in order]}


def series_latency(window, now=None, data=None, *, max_providers=6):
    """p95 latency (ms) per bin for the busiest providers; None where a bin has no calls."""
    size, bins, cells = data or window_cells(chart_window(window), now)
    index = {b: i for i, b in enumerate(bins)}
    volume = defaultdict(int)
    i_calls, lat = _INDEX["calls"], slice(_INDEX[LATENCY_COLUMNS[0]], _INDEX[LATENCY_COLUMNS[-1]] + 1)
    for (_, provider), v in cells.items():
        volume[provider] += v[i_calls]
    busiest = [p for p in sorted(volume, key=lambda p: -volume[p]) if volume[p]][:max_providers]
    per = {p: [None] * len(bins) for p in busiest}
    for (at, provider), v in cells.items():
        if provider in per and at in index and v[i_calls]:
            per[provider][index[at]] = latency_percentile(v[lat], 95)
    return {"size": size, "bins": bins, "series": [(p, per[p]) for p in busiest]}


def nice_ceiling(value):
    """A round axis maximum at or above value (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return candidate
    return 10 ** (exponent + 1)
