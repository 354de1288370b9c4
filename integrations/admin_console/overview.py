"""The console's overview: one row per provider over a window, with its circuit, and a totals row."""

from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from ..registry import all_providers
from ..usage import stats_from_sums
from .windows import DEFAULT_WINDOW, WINDOWS, _add_into, _as_dict, _empty, window_cells, window_key, window_since

CIRCUIT_LABELS = {"closed": "Closed", "open": "Open", "half_open": "Half-open (probing)"}


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
    from .. import breaker

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
