"""The charts' series (calls, cost, latency over a window) and the ceiling of their axes."""

import math
from collections import defaultdict
from decimal import Decimal

from ..usage import LATENCY_COLUMNS, latency_percentile
from .windows import _INDEX, window_cells, window_key


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
