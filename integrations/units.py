"""What a provider call is measured in: one definition that the roll-ups, the usage API and the console read.

Adapters report a call's units as a dict (`{"segments": 2}`, `{"input_tokens": 812,
"output_tokens": 97, "cached_tokens": 512}`, `{"bytes_in": 4096, "requests": 1}`).
Each unit below is kept in its own roll-up column and never added to another:
a request, a token, an SMS segment, a minute, a byte and a dollar moved do not
add up to anything. Cached tokens are the part of the input tokens the provider
served from its cache, cache-write tokens the part it wrote to its cache (billed
above the input price by Anthropic): subsets, never added to them.

A key an adapter reports that no unit claims stays in the call log's `units`
and is not rolled up (e.g. Stripe's `amount_minor` in a currency other than USD:
amounts in different currencies do not add up either).
"""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Unit:
    column: str  # the UsageRollup / ProviderRollup column and the usage API's key
    label: str  # what the console and admin call it
    keys: tuple  # the keys adapters report it under (ProviderCall.units)
    money: bool = False  # a USD amount (two decimals), not a count


UNITS = (
    Unit("requests", "Requests", ("requests",)),
    Unit("input_tokens", "Input tokens", ("input_tokens",)),
    Unit("output_tokens", "Output tokens", ("output_tokens",)),
    Unit("cached_tokens", "Cached input tokens", ("cached_tokens",)),
    Unit("cache_write_tokens", "Cache-write input tokens", ("cache_write_tokens",)),
    Unit("sms_segments", "SMS segments", ("segments",)),
    Unit("call_minutes", "Call minutes", ("minutes",)),
    Unit("bytes_in", "Bytes uploaded", ("bytes_in",)),
    Unit("bytes_out", "Bytes downloaded", ("bytes_out",)),
    Unit("bytes_copied", "Bytes copied", ("bytes_copied",)),
    Unit("money_moved_usd", "Money moved (USD)", ("amount_usd",), money=True),
    # Gmail's own quota units (send 100, get 5, ...): what its 250-per-user-per-second limit counts.
    Unit("quota_units", "Provider quota units", ("quota_units",)),
)

UNIT_COLUMNS = tuple(u.column for u in UNITS)
BY_COLUMN = {u.column: u for u in UNITS}


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def units_split(units):
    """{column: amount} for one call's reported units: each unit in its own column, unknown keys left out."""
    out = {}
    for unit in UNITS:
        total = Decimal(0)
        for key in unit.keys:
            amount = _number((units or {}).get(key))
            if amount is not None:
                total += amount
        out[unit.column] = total if unit.money else int(total)
    return out


def units_nonzero(row):
    """[(Unit, amount)] for the units a roll-up row or aggregate actually has, in definition order."""
    return [(u, row.get(u.column)) for u in UNITS if row.get(u.column)]
