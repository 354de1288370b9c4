"""When the office answers the phone, and who answers it: plain functions over a Schedule.

The schedule is the active BusinessHours row (admin-editable), or else the
TWILIO_BUSINESS_* settings. Windows whose close is not after their open
(22:00-06:00) run past midnight into the next day.
"""

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from integrations.timezones import zone_or_none

from .models import BusinessHours, ForwardingRule

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

OPEN, AFTER_HOURS, HOLIDAY = "open", "after_hours", "holiday"


@dataclass
class Schedule:
    tz: ZoneInfo
    weekly: dict = field(default_factory=dict)  # weekday -> [(opens, closes), ...]
    holidays: set = field(default_factory=set)
    greeting: str = "Sorry, we cannot take your call right now. Please leave a message after the tone."


def _in_window(t, opens, closes):
    if opens < closes:
        return opens <= t < closes
    return t >= opens  # the evening part of an overnight window


def _after_midnight(t, opens, closes):
    return closes <= opens and t < closes


def status_at(schedule, when):
    """OPEN, AFTER_HOURS or HOLIDAY for an aware datetime."""
    local = when.astimezone(schedule.tz)
    today, t = local.date(), local.time()
    if today in schedule.holidays:
        return HOLIDAY
    if any(_in_window(t, o, c) for o, c in schedule.weekly.get(local.weekday(), [])):
        return OPEN
    yesterday = (local.weekday() - 1) % 7
    if today - dt.timedelta(days=1) not in schedule.holidays and any(
        _after_midnight(t, o, c) for o, c in schedule.weekly.get(yesterday, [])
    ):
        return OPEN
    return AFTER_HOURS


def _time(value, name):
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: {value!r} is not a time like 09:00") from None


def parse_weekly(spec, name="TWILIO_BUSINESS_HOURS"):
    """'mon-fri 09:00-17:00; sat 10:00-14:00' -> {0: [(9:00, 17:00)], ...}; a malformed spec names the setting."""
    weekly = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        try:
            days, hours = part.split()
            opens, closes = hours.split("-")
            first, _, last = days.lower().partition("-")
            start, end = DAYS.index(first), DAYS.index(last or first)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: cannot read {part!r}; write e.g. 'mon-fri 09:00-17:00'") from None
        window = (_time(opens, name), _time(closes, name))
        day = start
        while True:
            weekly.setdefault(day, []).append(window)
            if day == end:
                break
            day = (day + 1) % 7
    return weekly


def _zone(name, setting):
    found = zone_or_none(name)
    if found is None:
        raise ImproperlyConfigured(f"{setting}: unknown time zone {name!r}")
    return found


def schedule_from_settings():
    holidays = set()
    for value in filter(None, (v.strip() for v in settings.TWILIO_BUSINESS_HOLIDAYS)):
        try:
            holidays.add(dt.date.fromisoformat(value))
        except ValueError:
            raise ImproperlyConfigured(f"TWILIO_BUSINESS_HOLIDAYS: {value!r} is not a date like 2026-12-25") from None
    return Schedule(
        tz=_zone(settings.TWILIO_BUSINESS_TIME_ZONE, "TWILIO_BUSINESS_TIME_ZONE"),
        weekly=parse_weekly(settings.TWILIO_BUSINESS_HOURS),
        holidays=holidays,
        greeting=settings.TWILIO_VOICEMAIL_GREETING,
    )


def schedule_current():
    row = BusinessHours.objects.filter(is_active=True).prefetch_related("weekly", "holidays").first()
    if row is None:
        return schedule_from_settings()
    weekly = {}
    for w in row.weekly.all():
        weekly.setdefault(w.weekday, []).append((w.opens, w.closes))
    return Schedule(
        tz=_zone(row.time_zone, f"BusinessHours {row.pk} time_zone"),
        weekly=weekly,
        holidays={h.date for h in row.holidays.all()},
        greeting=row.voicemail_greeting,
    )


def rule_for(*, caller, when, schedule):
    """The first active ForwardingRule (by priority) matching the caller and the local time, or None."""
    t = when.astimezone(schedule.tz).time()
    for rule in ForwardingRule.objects.filter(is_active=True).order_by("priority", "id"):
        if rule.caller_prefix and not (caller or "").startswith(rule.caller_prefix):
            continue
        if rule.start_time and rule.end_time:
            o, c = rule.start_time, rule.end_time
            if not (_in_window(t, o, c) or _after_midnight(t, o, c)):
                continue
        return rule
    return None
