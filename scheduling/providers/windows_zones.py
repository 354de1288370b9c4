"""Windows time zone names (what Graph reports, e.g. "Pacific Standard Time") as IANA zones.

The table is CLDR's windowsZones mapping as tzlocal ships it (tzlocal comes with
Celery); an IANA name passes through. Anything else (a custom Exchange zone)
is None and the caller falls back to another source.
"""

import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@functools.cache
def _table():
    try:
        from tzlocal.windows_tz import win_tz
    except ImportError:  # pragma: no cover - tzlocal is a Celery dependency
        return {}
    return dict(win_tz)


def zone_or_none(name):
    """The ZoneInfo for an IANA name, or None when it names no zone.

    The one place scheduling turns a name into a zone. ZoneInfo refuses an unknown name with
    ZoneInfoNotFoundError and a malformed one with ValueError, but a name that is a folder of the tz database
    ("America/Indiana", "Europe") with IsADirectoryError and an overlong one with "File name too long": both
    OSErrors, which would make a client's bad time zone a 500."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def iana_zone(name):
    """The ZoneInfo for a Windows or IANA zone name, or None."""
    if not name:
        return None
    return zone_or_none(_table().get(name, name))
