"""The staff console's figures: the overview per provider, the money page and the charts' series.

Everything here reads the hourly roll-ups (ProviderRollup for per-provider
figures, UsageRollup for per-owner spend), never a scan of the call log: a
30-day window is at most 720 rows per provider whatever the traffic. A window
is exact to the second: whole hours from the roll-up, plus the calls of the
window's first, partial hour from the call log (at most one hour of rows).
"""

import datetime as dt
import math
from collections import defaultdict
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from .models import Budget, ProviderCall, ProviderRollup, UsageRollup
from .registry import all_providers
from .units import UNIT_COLUMNS, units_split
from .usage import LATENCY_COLUMNS, latency_bucket, latency_percentile, month_start, stats_from_sums

WINDOWS = {"1h": ("last 1 h", 1), "24h": ("last 24 h", 24), "7d": ("last 7 d", 24 * 7), "30d": ("last 30 d", 24 * 30)}
DEFAULT_WINDOW = "24h"
CIRCUIT_LABELS = {"closed": "Closed", "open": "Open", "half_open": "Half-open (probing)"}
OUTCOMES = [o.value for o in ProviderCall.Outcome]
_SUMS = ["calls", *OUTCOMES, "cost_usd", "latency_ms_sum", *UNIT_COLUMNS, *LATENCY_COLUMNS]

# Money by kind of service, from the provider's group in the registry.
SERVICE_KINDS = {
    "payments": "Payment fees",
    "messaging": "SMS, voice and mail",
    "ai": "AI tokens",
    "documents": "Storage and transfer",
    "scheduling": "Calendar and video",
    "travel": "Flight search",
    "default": "Sign-in (OAuth)",
}


def window_key(value):
    return value if value in WINDOWS else DEFAULT_WINDOW


def window_since(key, now=None):
    now = now or timezone.now()
    return now - dt.timedelta(hours=WINDOWS[window_key(key)][1])


def _hour(value):
    return value.replace(minute=0, second=0, microsecond=0)


def _empty():
    return {c: (Decimal(0) if c == "cost_usd" else 0) for c in _SUMS}


def window_sums(*, since, now=None):
    """{provider: summed ProviderRollup columns} for calls in [since, now]."""
    now = now or timezone.now()
    first_full = _hour(since) if since == _hour(since) else _hour(since) + dt.timedelta(hours=1)
    out = defaultdict(_empty)
    rows = (
        ProviderRollup.objects.filter(hour__gte=first_full, hour__lte=now)
        .values("provider")
        .annotate(**{f"s_{c}": Sum(c) for c in _SUMS})
        .order_by()
    )
    for r in rows:
        out[r["provider"]] = {c: r[f"s_{c}"] or 0 for c in _SUMS}
    if since < first_full:
        # The window's first, partial hour: its calls from the call log.
        partial = ProviderCall.objects.filter(created_at__gte=since, created_at__lt=min(first_full, now))
        for provider, outcome, latency_ms, cost, units in partial.values_list(
            "provider", "outcome", "latency_ms", "cost_usd", "units"
        ).iterator():
            row = out[provider]
            row["calls"] += 1
            row[outcome] += 1
            row["cost_usd"] += cost
            row["latency_ms_sum"] += latency_ms
            row[f"l{latency_bucket(latency_ms)}"] += 1
            for column, amount in units_split(units).items():
                row[column] += amount
    return dict(out)


def overview(*, window=DEFAULT_WINDOW, now=None):
    """Rows per registered provider (plus any other provider with calls) and a totals row."""
    now = now or timezone.now()
    window = window_key(window)
    since = window_since(window, now)
    sums = window_sums(since=since, now=now)
    from . import breaker

    providers = all_providers()
    known = {p.name for p in providers}
    rows = []
    for spec in providers:
        rows.append(
            {
                "name": spec.name,
                "label": spec.label,
                "configured": spec.configured,
                "missing": spec.missing(),
                "circuit": breaker.state(spec.name),
                **stats_from_sums(sums.get(spec.name) or _empty()),
            }
        )
    for name in sorted(set(sums) - known):  # calls to a provider since removed from the registry
        rows.append(
            {"name": name, "label": name, "configured": False, "missing": [], "circuit": "closed"}
            | stats_from_sums(sums[name])
        )
    for row in rows:
        row["circuit_label"] = CIRCUIT_LABELS.get(row["circuit"], row["circuit"])
    # Providers with traffic first (busiest first), then the quiet ones in registry order.
    rows.sort(key=lambda r: (-r["calls"], not r["configured"]))
    total = _empty()
    for values in sums.values():
        for column in _SUMS:
            total[column] += values[column]
    return {
        "window": window,
        "window_label": WINDOWS[window][0],
        "since": since,
        "now": now,
        "rows": rows,
        "total": stats_from_sums(total),
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
        "top_spenders": top_spenders(start=start, end=end, limit=top),
    }


def top_spenders(*, start, end, limit=10):
    """The owners who spent most in [start, end): cost and calls, from the per-owner roll-up."""
    from django.contrib.auth import get_user_model

    rows = list(
        UsageRollup.objects.filter(hour__gte=start, hour__lt=end, owner__isnull=False)
        .values("owner_id")
        .annotate(cost=Sum("cost_usd"), calls=Sum("calls"))
        .filter(cost__gt=0)
        .order_by("-cost")[:limit]
    )
    users = get_user_model().objects.in_bulk([r["owner_id"] for r in rows])
    return [{"owner": users.get(r["owner_id"]), "owner_id": r["owner_id"], **r} for r in rows]


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


def chart_bins(window, now=None):
    """(bin size, bin starts) for a window: hours for 1 h and 24 h, days for 7 d and 30 d."""
    now = now or timezone.now()
    window = window_key(window)
    if WINDOWS[window][1] <= 24:
        last = _hour(now)
        return "hour", [last - dt.timedelta(hours=i) for i in range(23, -1, -1)]
    days = WINDOWS[window][1] // 24
    last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return "day", [last - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]


def _binned(window, now, columns, by_provider):
    size, bins = chart_bins(window, now)
    rows = ProviderRollup.objects.filter(hour__gte=bins[0])
    key = "hour" if size == "hour" else "bin"
    if size == "day":
        rows = rows.annotate(bin=TruncDay("hour", tzinfo=dt.UTC))
    group = [key, "provider"] if by_provider else [key]
    rows = rows.values(*group).annotate(**{f"s_{c}": Sum(c) for c in columns}).order_by()
    return size, bins, [(r[key], r.get("provider"), {c: r[f"s_{c}"] or 0 for c in columns}) for r in rows]


def series_calls(window, now=None):
    """Calls and failures per bin."""
    size, bins, rows = _binned(window, now, ["calls", "error", "rate_limited", "timeout"], False)
    index = {b: i for i, b in enumerate(bins)}
    calls, failures = [0] * len(bins), [0] * len(bins)
    for at, _, v in rows:
        if at in index:
            calls[index[at]] = v["calls"]
            failures[index[at]] = v["error"] + v["rate_limited"] + v["timeout"]
    return {"size": size, "bins": bins, "calls": calls, "failures": failures}


def series_cost(window="30d", now=None):
    """Cost per bin, per provider (for a stacked chart)."""
    size, bins, rows = _binned(window, now, ["cost_usd"], True)
    index = {b: i for i, b in enumerate(bins)}
    per = defaultdict(lambda: [Decimal(0)] * len(bins))
    for at, provider, v in rows:
        if at in index and v["cost_usd"]:
            per[provider][index[at]] += v["cost_usd"]
    order = sorted(per, key=lambda p: -sum(per[p]))
    return {"size": size, "bins": bins, "series": [(p, per[p]) for p in order]}


def series_latency(window, now=None, *, max_providers=6):
    """p95 latency (ms) per bin for the busiest providers; None where a bin has no calls."""
    size, bins, rows = _binned(window, now, ["calls", *LATENCY_COLUMNS], True)
    index = {b: i for i, b in enumerate(bins)}
    volume = defaultdict(int)
    per = defaultdict(lambda: [None] * len(bins))
    for at, provider, v in rows:
        if at in index:
            volume[provider] += v["calls"]
            per[provider][index[at]] = latency_percentile([v[c] for c in LATENCY_COLUMNS], 95)
    order = sorted(volume, key=lambda p: -volume[p])[:max_providers]
    return {"size": size, "bins": bins, "series": [(p, per[p]) for p in order]}


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
