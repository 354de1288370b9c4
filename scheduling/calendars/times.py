"""Event times: UTC instants plus the event's IANA zone; all-day events as dates (never through a zone).

Graph names zones the Windows way ("Pacific Standard Time"); they are mapped
to IANA on the way in (scheduling.providers.windows_zones) and IANA names to
Windows on the way out, which Graph accepts everywhere.
"""

import datetime as dt
from zoneinfo import ZoneInfo

from integrations.errors import DomainError
from integrations.timezones import zone_or_none

from ..providers.windows_zones import iana_zone

# Far enough either way for any real event, near enough that moving a time between zones, adding an event's length
# or a day, and expanding a series never leave the years 1 to 9999 Python's dates can hold (that was a 500).
FIRST_YEAR, LAST_YEAR = 1900, 2200


def in_years(value):
    """Whether a client's date or date-time falls in the years the hub takes (FIRST_YEAR..LAST_YEAR)."""
    return FIRST_YEAR <= value.year <= LAST_YEAR


def zone(name, field="time_zone"):
    """The ZoneInfo for an IANA name, or a 400 naming the field."""
    found = zone_or_none(name) if name and ("/" in name or name == "UTC") else None
    if found is None:
        raise DomainError(
            400, "invalid_time_zone", f"{field}: unknown IANA time zone {name!r} (e.g. Europe/Berlin).", field=field
        )
    return found


def windows_name(iana):
    """The Windows name Graph knows for an IANA zone (the IANA name itself when CLDR has none, e.g. UTC)."""
    try:
        from tzlocal.windows_tz import tz_win
    except ImportError:  # pragma: no cover - tzlocal is a Celery dependency
        return iana
    return tz_win.get(iana, iana)


def from_provider_zone(name, default="UTC"):
    """IANA name for a Windows or IANA zone name from a provider; `default` for a custom or unknown one."""
    found = iana_zone(name)
    return found.key if found is not None else default


def parse_instant(text, tz_name=None):
    """An ISO 8601 date-time as an aware UTC datetime; a naive one is wall-clock in `tz_name`."""
    if "." in text:  # Graph gives 7 fractional digits, Python takes 6
        head, frac = text.split(".", 1)
        digits = "".join(c for c in frac if c.isdigit())
        text = f"{head}.{digits[:6]}{frac[len(digits) :]}"
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        found = iana_zone(tz_name or "UTC")
        moment = moment.replace(tzinfo=found or dt.UTC)
    return moment.astimezone(dt.UTC)


def wall(moment, tz_name):
    """The instant as wall-clock time in the zone (aware)."""
    return moment.astimezone(ZoneInfo(tz_name))


def rfc3339(moment):
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
