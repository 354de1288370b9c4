"""Windows and their cells: the per-provider sums of a window, read from the hourly roll-ups.

A window is exact to the second: whole hours (and, for long windows, whole days,
cached once closed) from ProviderRollup, plus the calls of the window's first,
partial hour from the call log.
"""

import datetime as dt
import uuid
from decimal import Decimal

from django.db import connection
from django.db.models import Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from ..models import ProviderCall, ProviderRollup
from ..units import UNIT_COLUMNS, UNITS, units_split
from ..usage import LATENCY_COLUMNS, latency_bucket

WINDOWS = {"1h": ("last 1 h", 1), "24h": ("last 24 h", 24), "7d": ("last 7 d", 24 * 7), "30d": ("last 30 d", 24 * 30)}
DEFAULT_WINDOW = "24h"
OUTCOMES = [o.value for o in ProviderCall.Outcome]
_SUMS = ["calls", *OUTCOMES, "cost_usd", "latency_ms_sum", *UNIT_COLUMNS, *LATENCY_COLUMNS]


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
