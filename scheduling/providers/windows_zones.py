"""Windows time zone names (what Graph reports, e.g. "Pacific Standard Time") as IANA zones.

The table is CLDR's windowsZones mapping as tzlocal ships it (tzlocal comes with
Celery); an IANA name passes through. Anything else (a custom Exchange zone)
is None and the caller falls back to another source.
"""

import functools

from integrations.timezones import zone_or_none


@functools.cache
def _table():
    try:
        from tzlocal.windows_tz import win_tz
    except ImportError:  # pragma: no cover - tzlocal is a Celery dependency
        return {}
    return dict(win_tz)


def iana_zone(name):
    """The ZoneInfo for a Windows or IANA zone name, or None."""
    if not name:
        return None
    return zone_or_none(_table().get(name, name))
