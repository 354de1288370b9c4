"""The money page: a month's cost by provider and by kind of service, top spenders and owner budgets."""

import datetime as dt
import heapq
from collections import defaultdict
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from ..models import Budget, ProviderRollup, UsageRollup
from ..registry import all_providers
from ..usage import month_start
from .windows import DAY_CACHE_SECONDS, SETTLE, _day, _generation

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


def _month_bounds(month, now):
    """(start, end, is_current) of a month given as "YYYY-MM" (default: this month)."""
    current = month_start(now)
    start = current
    if month:
        try:
            year, number = (int(x) for x in month.split("-"))
            if not dt.MINYEAR < year < dt.MAXYEAR:  # the page also reads the month before and the one after
                raise ValueError(month)
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
