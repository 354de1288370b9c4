"""Recurrence as RFC 5545 lines (Google's native form) and its translation to and from Graph's patternedRecurrence.

The hub's form is Google's: a list of lines, "RRULE:FREQ=WEEKLY;BYDAY=MO,WE",
"EXDATE;TZID=Europe/Berlin:20260309T090000" (or "EXDATE;VALUE=DATE:20260309").
Graph's `recurrence` is a pattern (daily, weekly, absolute/relative monthly and
yearly, with interval, daysOfWeek, dayOfMonth, month, index, firstDayOfWeek)
and a range (noEnd, endDate, numbered). Graph has no EXDATE: an excluded
occurrence is an occurrence deleted after the series is made, and a deleted
occurrence of a Graph series comes back as an EXDATE line.

What Graph cannot express (hourly and finer, BYHOUR/BYMINUTE/BYSECOND,
BYWEEKNO, BYYEARDAY, several or negative BYMONTHDAY, several BYMONTH, ordinals
in a weekly rule, RDATE/EXRULE, ordinals beyond Graph's first..fourth/last) is
a 400 `unsupported_recurrence` naming the part, before anything is sent.

Week start: Graph counts an every-n-weeks series' weeks from `firstDayOfWeek` (sunday by default), RFC 5545
from WKST (MO by default); both directions carry it so that the same occurrences come out (_assumed_week_start).
"""

import datetime as dt
import re
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from integrations.errors import DomainError
from integrations.timezones import zone_or_none

from .times import FIRST_YEAR, LAST_YEAR, in_years

DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
GRAPH_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEX = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
INDEX_BACK = {v: k for k, v in INDEX.items()}
KNOWN = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
UNSUPPORTED_BY_GRAPH = {"BYHOUR", "BYMINUTE", "BYSECOND", "BYWEEKNO", "BYYEARDAY"}
FREQS = {"SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_NUMBERS = re.compile(r"^[+-]?\d{1,3}(,[+-]?\d{1,3})*$")
NUMERIC = {"BYMONTHDAY", "BYMONTH", "BYSETPOS", "BYHOUR", "BYMINUTE", "BYSECOND", "BYWEEKNO", "BYYEARDAY"}
MAX_LINES = 50


def invalid(detail):
    return DomainError(400, "invalid_recurrence", f"recurrence: {detail}", field="recurrence")


def unsupported(part, why):
    return DomainError(
        400,
        "unsupported_recurrence",
        f"recurrence: Microsoft calendars cannot express {part} ({why}); use a rule Outlook offers "
        "(daily, weekly on days, monthly or yearly on a date or on the first..fourth/last weekday).",
        field="recurrence",
        part=part,
    )


def parse_rule(line):
    """ "RRULE:FREQ=...;..." -> {"FREQ": "WEEKLY", ...} (values as strings), a 400 when it is not one."""
    body = line.split(":", 1)[1] if ":" in line else ""
    parts = {}
    for item in body.split(";"):
        key, sep, value = item.partition("=")
        key = key.strip().upper()
        if not sep or not key or not value or key in parts:
            raise invalid(f"{line[:200]!r} is not an RRULE (NAME=VALUE pairs separated by ';').")
        parts[key] = value.strip().upper()
    if parts.get("FREQ") not in FREQS:
        raise invalid(f"{line[:200]!r} needs FREQ (DAILY, WEEKLY, MONTHLY, YEARLY...).")
    if "COUNT" in parts and "UNTIL" in parts:
        raise invalid("COUNT and UNTIL cannot both be given.")
    for key in ("INTERVAL", "COUNT"):
        if key in parts and (not parts[key].isdigit() or int(parts[key]) < 1 or int(parts[key]) > 999):
            raise invalid(f"{key} must be a whole number from 1 to 999.")
    for day in parts.get("BYDAY", "").split(",") if "BYDAY" in parts else []:
        if not _BYDAY.match(day):
            raise invalid(f"BYDAY value {day!r} is not a weekday such as MO or 2TU.")
    for key in NUMERIC & set(parts):
        if not _NUMBERS.match(parts[key]):
            raise invalid(f"{key} takes whole numbers separated by commas, not {parts[key][:40]!r}.")
    if parts.get("WKST", "MO") not in DAYS:
        raise invalid(f"WKST {parts['WKST'][:10]!r} is not a weekday such as MO.")
    if "UNTIL" in parts:
        until_value(parts["UNTIL"])
    return parts


def until_value(text):
    """UNTIL as a date (YYYYMMDD) or an aware UTC datetime (YYYYMMDDTHHMMSSZ)."""
    try:
        if "T" in text:
            if not text.endswith("Z"):
                raise ValueError(text)
            value = dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        else:
            value = dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise invalid(f"UNTIL {text!r} must be YYYYMMDD or YYYYMMDDTHHMMSSZ (UTC).") from None
    return value


def format_rule(parts):
    order = ["FREQ", "INTERVAL", "BYMONTH", "BYMONTHDAY", "BYDAY", "BYSETPOS", "WKST", "COUNT", "UNTIL"]
    keys = [k for k in order if k in parts] + sorted(k for k in parts if k not in order)
    return "RRULE:" + ";".join(f"{k}={parts[k]}" for k in keys)


def split(lines):
    """(rrule parts or None, [EXDATE values as dates or aware UTC datetimes]) from the hub's lines, validated."""
    if not isinstance(lines, list) or len(lines) > MAX_LINES or not all(isinstance(x, str) for x in lines):
        raise invalid(f"a list of at most {MAX_LINES} RFC 5545 lines (RRULE:..., EXDATE:...).")
    rule, exdates = None, []
    for line in lines:
        name = line.split(":", 1)[0].split(";", 1)[0].strip().upper()
        if name == "RRULE":
            if rule is not None:
                raise invalid("only one RRULE line is supported.")
            rule = parse_rule(line)
        elif name == "EXDATE":
            exdates += exdate_values(line)
        elif name in ("RDATE", "EXRULE"):
            raise invalid(f"{name} lines are not supported; use RRULE and EXDATE.")
        else:
            raise invalid(f"{line[:100]!r} is not an RRULE or EXDATE line.")
    if exdates and rule is None:
        raise invalid("EXDATE needs an RRULE.")
    return rule, exdates


def exdate_values(line):
    head, _, values = line.partition(":")
    params = dict(p.split("=", 1) for p in head.split(";")[1:] if "=" in p)
    tz = params.get("TZID")
    out = []
    for value in values.split(","):
        value = value.strip()
        try:
            if params.get("VALUE") == "DATE" or len(value) == 8:
                moment = dt.datetime.strptime(value, "%Y%m%d").date()
            elif value.endswith("Z"):
                moment = dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            else:
                zone = zone_or_none(tz or "UTC")
                if zone is None:
                    raise ValueError(tz)
                moment = dt.datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone).astimezone(dt.UTC)
        except (ValueError, OverflowError):  # overflow: a wall-clock time in year 1 or 9999 has no UTC instant
            raise invalid(f"EXDATE value {value[:40]!r} is not a date or date-time.") from None
        out.append(moment)
    return out


def years_check(lines):
    """A client's UNTIL and EXDATEs fall in the years the hub takes (times.FIRST_YEAR..LAST_YEAR): one far off
    would let a series' expansion leave Python's dates (a 500), or make a series nobody means."""
    rule, exdates = split(lines)
    named = [("EXDATE", value) for value in exdates]
    if rule is not None and "UNTIL" in rule:
        named.append(("UNTIL", until_value(rule["UNTIL"])))
    for label, value in named:
        if not in_years(value):
            raise invalid(f"{label} {value.isoformat()} must fall between the years {FIRST_YEAR} and {LAST_YEAR}.")


def exdate_line(values, tz_name):
    """EXDATE lines for these occurrences (dates, or instants written as wall-clock in the event's zone)."""
    dates = sorted(v for v in values if not isinstance(v, dt.datetime))
    times = sorted(v for v in values if isinstance(v, dt.datetime))
    lines = []
    if dates:
        lines.append("EXDATE;VALUE=DATE:" + ",".join(d.strftime("%Y%m%d") for d in dates))
    if times:
        zone = ZoneInfo(tz_name)
        lines.append(f"EXDATE;TZID={tz_name}:" + ",".join(t.astimezone(zone).strftime("%Y%m%dT%H%M%S") for t in times))
    return lines


# --- Graph ---------------------------------------------------------------------------------


def _days(value):
    """BYDAY -> [(ordinal or None, "MO")]."""
    out = []
    for item in value.split(","):
        match = _BYDAY.match(item)
        out.append((int(match.group(1)) if match.group(1) else None, match.group(2)))
    return out


def _index(ordinal, part):
    if ordinal not in INDEX:
        raise unsupported(part, "Outlook counts weekdays as first, second, third, fourth or last only")
    return INDEX[ordinal]


def _assumed_week_start(*, weekly, interval):
    """The week start that a rule without WKST stands for on the Graph side (so from_graph writes WKST only
    when Graph's firstDayOfWeek differs from it).

    An every-n-weeks series counts its weeks from the week start: Graph from firstDayOfWeek (sunday when not
    named), RFC 5545 from WKST (MO when not given). "Every other week on Wednesday and Sunday" from a Wednesday
    has its Sunday after that Wednesday in Monday weeks, eleven days later in Sunday weeks. So for such a
    series no WKST means Monday in both directions. Anywhere else the week start moves no occurrence, and
    Graph's default (sunday) stands for it, so the lines of other series read from Outlook stay as they were.
    """
    return "MO" if weekly and interval > 1 else "SU"


def to_graph(parts, *, first_day, tz_name, start_time=dt.time(0, 0)):
    """RRULE parts -> Graph's {"pattern", "range"} for a series starting on `first_day` (a local date) at
    `start_time` (local; Graph's endDate includes that whole day, so an UNTIL earlier in the day than the
    occurrences ends the series the day before)."""
    for key in parts:
        if key in UNSUPPORTED_BY_GRAPH:
            raise unsupported(key, "Outlook repeats by day, week, month or year only")
        if key not in KNOWN:
            raise unsupported(key, "not part of what Outlook repeats by")
    freq = parts["FREQ"]
    if freq in ("SECONDLY", "MINUTELY", "HOURLY"):
        raise unsupported(f"FREQ={freq}", "Outlook repeats daily at most")
    interval = int(parts.get("INTERVAL", "1"))
    days = _days(parts["BYDAY"]) if "BYDAY" in parts else []
    monthdays = parts.get("BYMONTHDAY", "").split(",") if "BYMONTHDAY" in parts else []
    months = parts.get("BYMONTH", "").split(",") if "BYMONTH" in parts else []
    setpos = parts.get("BYSETPOS")
    if len(monthdays) > 1 or any(not d.isdigit() or not 1 <= int(d) <= 31 for d in monthdays):
        raise unsupported(f"BYMONTHDAY={parts['BYMONTHDAY']}", "Outlook takes one day of the month, 1 to 31")
    if len(months) > 1 or any(not m.isdigit() or not 1 <= int(m) <= 12 for m in months):
        raise unsupported(f"BYMONTH={parts['BYMONTH']}", "Outlook takes one month")
    if setpos is not None and (freq not in ("MONTHLY", "YEARLY") or not days or "," in setpos):
        raise unsupported(f"BYSETPOS={setpos}", "Outlook takes one position, on weekdays of a month")
    week_start = parts.get("WKST") or _assumed_week_start(weekly=freq == "WEEKLY", interval=interval)
    pattern = {"interval": interval, "firstDayOfWeek": GRAPH_DAYS[DAYS.index(week_start)]}
    names = [GRAPH_DAYS[DAYS.index(d)] for _, d in days]
    ordinals = {o for o, _ in days}
    if freq == "DAILY":
        if days:
            if interval != 1 or ordinals != {None}:
                raise unsupported(f"BYDAY={parts['BYDAY']}", "Outlook repeats on weekdays only every week")
            pattern.update(type="weekly", daysOfWeek=names)
        elif monthdays or months:
            raise unsupported("BYMONTHDAY" if monthdays else "BYMONTH", "a daily rule cannot pick days")
        else:
            pattern.update(type="daily")
    elif freq == "WEEKLY":
        if ordinals - {None}:
            raise unsupported(f"BYDAY={parts['BYDAY']}", "a weekly rule cannot number its weekdays")
        if monthdays or months:
            raise unsupported("BYMONTHDAY" if monthdays else "BYMONTH", "a weekly rule cannot pick days of a month")
        pattern.update(type="weekly", daysOfWeek=names or [GRAPH_DAYS[first_day.weekday()]])
    else:
        yearly = freq == "YEARLY"
        if yearly:
            pattern["month"] = int(months[0]) if months else first_day.month
        elif months:
            raise unsupported(f"BYMONTH={parts['BYMONTH']}", "a monthly rule runs every month")
        if days:
            if monthdays:
                raise unsupported("BYMONTHDAY with BYDAY", "Outlook picks a date or a weekday, not both")
            if setpos is not None:
                if ordinals != {None}:
                    raise unsupported(f"BYDAY={parts['BYDAY']}", "numbered weekdays with BYSETPOS")
                index = _index(int(setpos), f"BYSETPOS={setpos}")
            else:
                if len(ordinals) != 1 or None in ordinals:
                    raise unsupported(f"BYDAY={parts['BYDAY']}", "Outlook numbers one weekday (e.g. 2TU)")
                (ordinal,) = ordinals
                index = _index(ordinal, f"BYDAY={parts['BYDAY']}")
            pattern.update(type="relativeYearly" if yearly else "relativeMonthly", daysOfWeek=names, index=index)
        else:
            day = int(monthdays[0]) if monthdays else first_day.day
            pattern.update(type="absoluteYearly" if yearly else "absoluteMonthly", dayOfMonth=day)
    rng = {"startDate": first_day.isoformat(), "recurrenceTimeZone": tz_name}
    if "COUNT" in parts:
        rng.update(type="numbered", numberOfOccurrences=int(parts["COUNT"]))
    elif "UNTIL" in parts:
        until = until_value(parts["UNTIL"])
        if isinstance(until, dt.datetime):
            local = until.astimezone(ZoneInfo(tz_name))
            until = (
                local.date() if local.time().replace(tzinfo=None) >= start_time else local.date() - dt.timedelta(days=1)
            )
        rng.update(type="endDate", endDate=until.isoformat())
    else:
        rng.update(type="noEnd")
    return {"pattern": pattern, "range": rng}


def from_graph(recurrence, *, tz_name, all_day):
    """Graph's {"pattern", "range"} -> RRULE parts. endDate (inclusive, local) becomes UNTIL: a date for all-day
    events, else the last moment of that day in the series' zone, in UTC."""
    pattern, rng = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = pattern.get("type")
    parts = {}
    interval = int(pattern.get("interval") or 1)
    days = ",".join(DAYS[GRAPH_DAYS.index(d.lower())] for d in pattern.get("daysOfWeek") or [])
    if kind == "daily":
        parts["FREQ"] = "DAILY"
    elif kind == "weekly":
        parts["FREQ"] = "WEEKLY"
        parts["BYDAY"] = days
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        parts["FREQ"] = "MONTHLY" if kind == "absoluteMonthly" else "YEARLY"
        if kind == "absoluteYearly":
            parts["BYMONTH"] = str(pattern["month"])
        parts["BYMONTHDAY"] = str(pattern["dayOfMonth"])
    elif kind in ("relativeMonthly", "relativeYearly"):
        parts["FREQ"] = "MONTHLY" if kind == "relativeMonthly" else "YEARLY"
        if kind == "relativeYearly":
            parts["BYMONTH"] = str(pattern["month"])
        ordinal = INDEX_BACK[pattern.get("index") or "first"]
        if "," in days:
            parts["BYDAY"], parts["BYSETPOS"] = days, str(ordinal)
        else:
            parts["BYDAY"] = f"{ordinal}{days}"
    else:
        raise ValueError(f"unknown Graph recurrence pattern {kind!r}")
    if interval != 1:
        parts["INTERVAL"] = str(interval)
    first = DAYS[GRAPH_DAYS.index((pattern.get("firstDayOfWeek") or "sunday").lower())]
    if first != _assumed_week_start(weekly=kind == "weekly", interval=interval):
        parts["WKST"] = first
    if rng.get("type") == "numbered":
        parts["COUNT"] = str(rng["numberOfOccurrences"])
    elif rng.get("type") == "endDate" and rng.get("endDate"):
        end = dt.date.fromisoformat(rng["endDate"][:10])
        if all_day:
            parts["UNTIL"] = end.strftime("%Y%m%d")
        else:
            last = dt.datetime.combine(end, dt.time(23, 59, 59), tzinfo=ZoneInfo(tz_name))
            parts["UNTIL"] = last.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return parts


# --- Expansion --------------------------------------------------------------------------------


def occurrences(lines, *, start, tz_name, all_day, window_start, window_end, limit=1000, keep_excluded=False):
    """The occurrences' starts (aware UTC datetimes, or dates for all-day events) within the window.

    Timed series are expanded in the event's own zone from its wall-clock start, so a weekly 09:00 in
    America/New_York stays 09:00 across the DST changes (its UTC instant moves by the hour).
    """
    rule, exdates = split(lines)
    if rule is None:
        return []
    parts = dict(rule)
    if all_day:
        dtstart = dt.datetime.combine(start, dt.time(0, 0))
        if "UNTIL" in parts:
            until = until_value(parts["UNTIL"])
            day = until.date() if isinstance(until, dt.datetime) else until
            parts["UNTIL"] = day.strftime("%Y%m%dT235959")
        lo = dt.datetime.combine(window_start, dt.time(0, 0)) if isinstance(window_start, dt.date) else window_start
        hi = dt.datetime.combine(window_end, dt.time(0, 0)) if isinstance(window_end, dt.date) else window_end
        lo, hi = lo.replace(tzinfo=None), hi.replace(tzinfo=None)
    else:
        dtstart = start.astimezone(ZoneInfo(tz_name))
        if "UNTIL" in parts and "T" not in parts["UNTIL"]:
            day = until_value(parts["UNTIL"])
            parts["UNTIL"] = (
                dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=ZoneInfo(tz_name))
                .astimezone(dt.UTC)
                .strftime("%Y%m%dT%H%M%SZ")
            )
        lo, hi = window_start, window_end
    rule_set = du.rrulestr(format_rule(parts), dtstart=dtstart, forceset=True)
    excluded = set() if keep_excluded else set(exdates)
    out = []
    for when in rule_set.between(lo, hi, inc=True):
        value = when.date() if all_day else when.astimezone(dt.UTC)
        if value in excluded:
            continue
        out.append(value)
        if len(out) >= limit:
            break
    return out


def _count_before(lines, *, original_start, tz_name, all_day, series_start):
    """How many occurrences the series has before `original_start`, excluded ones included: COUNT counts them too
    (RFC 5545 3.8.5.1)."""
    return len(
        occurrences(
            lines,
            start=series_start,
            tz_name=tz_name,
            all_day=all_day,
            window_start=series_start,
            window_end=original_start - (dt.timedelta(days=1) if all_day else dt.timedelta(seconds=1)),
            keep_excluded=True,
        )
    )


def truncated_before(lines, *, original_start, tz_name, all_day, series_start):
    """The series' lines ending just before the occurrence at `original_start` ("this and following")."""
    rule, exdates = split(lines)
    parts = dict(rule)
    if all_day:
        last = original_start - dt.timedelta(days=1)
        until = last.strftime("%Y%m%d")
    else:
        until = (original_start - dt.timedelta(seconds=1)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if "COUNT" in parts:
        before = _count_before(
            lines, original_start=original_start, tz_name=tz_name, all_day=all_day, series_start=series_start
        )
        parts["COUNT"] = str(max(1, before))
    else:
        parts.pop("COUNT", None)
        parts["UNTIL"] = until
    kept = [e for e in exdates if e < original_start]
    return [format_rule(parts), *exdate_line(kept, tz_name)]


def exdates_moved(lines, *, old_first, old_zone, new_first, new_zone):
    """The lines with each EXDATE moved as the series' first occurrence moved (from `old_first` to `new_first`,
    aware instants or dates for all-day series): an excluded occurrence stays excluded when "this and
    following" moves the series to another time, day or zone (an EXDATE at the old time would exclude nothing)."""
    rule, exdates = split(lines)
    if not exdates:
        return lines

    def local(value, zone):
        if isinstance(value, dt.datetime):
            return value.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        return dt.datetime.combine(value, dt.time(0, 0))

    delta = local(new_first, new_zone) - local(old_first, old_zone)
    moved = []
    for value in exdates:
        wall = local(value, old_zone) + delta
        if isinstance(new_first, dt.datetime):
            moved.append(wall.replace(tzinfo=ZoneInfo(new_zone)).astimezone(dt.UTC))
        else:
            moved.append(wall.date())
    return [format_rule(rule), *exdate_line(moved, new_zone)]


def remaining(lines, *, original_start, tz_name, all_day, series_start):
    """The lines for the new series that takes over from `original_start` (COUNT reduced by those before)."""
    rule, exdates = split(lines)
    parts = dict(rule)
    if "COUNT" in parts:
        before = _count_before(
            lines, original_start=original_start, tz_name=tz_name, all_day=all_day, series_start=series_start
        )
        parts["COUNT"] = str(max(1, int(parts["COUNT"]) - before))
    kept = [e for e in exdates if e >= original_start]
    return [format_rule(parts), *exdate_line(kept, tz_name)]
