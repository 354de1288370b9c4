"""The one place the hub turns an IANA name (a client's, a provider's or a setting's) into a zone."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone_or_none(name):
    """The ZoneInfo for an IANA name, or None when it names no zone.

    ZoneInfo refuses an unknown name with ZoneInfoNotFoundError and a malformed one with ValueError, but a name
    that is a folder of the tz database ("America/Indiana", "Europe") with IsADirectoryError and an overlong one
    with "File name too long": both OSErrors, which made a bad time zone a 500 wherever only the first two were
    caught."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # TypeError: no name at all (None)
        return None
