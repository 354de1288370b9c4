"""Whom a caller may ask about, and each participant's working hours from the request or the provider."""

from datetime import time

from django.contrib.auth import get_user_model
from django.db.models import Q

from integrations.errors import DomainError
from integrations.timezones import zone_or_none

from .slots import WorkingHours


def visible_users(caller):
    """The users `caller` may ask availability for (see the package docstring)."""
    users = get_user_model().objects.filter(is_active=True)
    if caller.is_staff:
        return users
    return users.filter(Q(pk=caller.pk) | Q(groups__in=caller.groups.all())).distinct()


def _participants(caller, ids):
    found = {u.pk: u for u in visible_users(caller).filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise DomainError(
            404,
            "user_not_found",
            f"No user {missing[0]} that you may ask about: yourself, or people who share a group with you.",
            user=missing[0],
        )
    return [found[i] for i in ids]


def zone(name, field):
    found = zone_or_none(name)
    if found is None:
        raise DomainError(400, "invalid", f"{field}: unknown IANA time zone {name!r}.", field=field)
    return found


def _hours_for(asked, stored, default):
    """WorkingHours and where they came from: the request's fields over the stored hours over the default."""
    asked = {k: v for k, v in (asked or {}).items() if v is not None}
    base = stored or default
    merged = {**base, **asked}
    origin = "request" if asked else ("microsoft" if stored else "default")
    hours = WorkingHours(
        time_zone=zone(merged["time_zone"], "users.working_hours.time_zone"),
        days=frozenset(merged["days"]),
        start=_as_time(merged["start"]),
        end=_as_time(merged["end"]),
    )
    return hours, origin


def _as_time(value):
    return value if isinstance(value, time) else time.fromisoformat(value)
