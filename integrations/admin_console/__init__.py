"""The staff console's figures: the overview per provider, the money page and the charts' series.

Everything here reads the hourly roll-ups (ProviderRollup for per-provider
figures, UsageRollup for per-owner spend), never a scan of the call log: a
30-day window is at most 720 rows per provider whatever the traffic. A window
is exact to the second: whole hours from the roll-up, plus the calls of the
window's first, partial hour from the call log (at most one hour of rows).

windows.py  WINDOWS, window_cells and the roll-up cache
overview.py the overview table
money.py    the money page
series.py   the charts' series
"""

from .money import MICRO, SERVICE_KINDS, money, owner_budgets, top_spenders
from .overview import CIRCUIT_LABELS, overview, provider_sums
from .series import chart_window, nice_ceiling, series_calls, series_cost, series_latency
from .windows import (
    DAY_CACHE_SECONDS,
    DEFAULT_WINDOW,
    OUTCOMES,
    SETTLE,
    WINDOWS,
    console_cache_reset,
    window_cells,
    window_key,
    window_since,
)

__all__ = [
    "DAY_CACHE_SECONDS",
    "DEFAULT_WINDOW",
    "OUTCOMES",
    "SETTLE",
    "WINDOWS",
    "console_cache_reset",
    "window_cells",
    "window_key",
    "window_since",
    "CIRCUIT_LABELS",
    "overview",
    "provider_sums",
    "MICRO",
    "SERVICE_KINDS",
    "money",
    "owner_budgets",
    "top_spenders",
    "chart_window",
    "nice_ceiling",
    "series_calls",
    "series_cost",
    "series_latency",
]
