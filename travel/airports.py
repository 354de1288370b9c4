"""The local list of IATA codes a search may name, checked before any provider call.

Built from the `airportsdata` package (pinned in requirements.txt): its airport
table keyed by IATA code (about 7,900 airports with time zones) and its IATA
metropolitan-area table (city codes such as LON, NYC, PAR, TYO, which Duffel
accepts as an origin or destination). It is local and versioned with the hub,
so a typo is a 400 without spending a search; a new airport arrives with a
dependency bump. Loaded once per process (~0.1 s), on first use.
"""

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


@functools.cache
def _tables():
    import airportsdata

    airports = airportsdata.load("IATA")
    cities = airportsdata.load_iata_macs()
    return airports, cities


def warm():
    _tables()


def is_known(code):
    airports, cities = _tables()
    return code in airports or code in cities


def describe(code):
    """{"type", "iata_code", "name", "time_zone"} for a known code, else None."""
    airports, cities = _tables()
    if code in airports:
        a = airports[code]
        return {"type": "airport", "iata_code": code, "name": a["name"], "city": a["city"], "time_zone": a["tz"]}
    if code in cities:
        c = cities[code]
        return {"type": "city", "iata_code": code, "name": c["name"], "airports": sorted(c["airports"])}
    return None


def airports_of(code):
    """The airport codes a code stands for: itself, or a city's airports."""
    airports, cities = _tables()
    if code in cities:
        return set(cities[code]["airports"]) | ({code} if code in airports else set())
    return {code}


@functools.cache
def _zone(code):
    airports, cities = _tables()
    tz = airports[code]["tz"] if code in airports else None
    if not tz and code in cities:
        tz = next((a.get("tz") for a in cities[code]["airports"].values() if a.get("tz")), None)
    try:
        return ZoneInfo(tz) if tz else UTC
    except (KeyError, ValueError):
        return UTC


def local_today(code, now=None):
    """Today's date at `code` (an airport or city): departure dates are local to the origin."""
    now = now or datetime.now(UTC)
    return now.astimezone(_zone(code)).date()
