"""The client's event fields checked and completed into an EventWrite; a bad one is a 400 naming it."""

import datetime as dt

from integrations.errors import DomainError

from .. import recurrence, times
from ..types import EventWrite

VISIBILITY = ("default", "public", "private", "confidential")


def _bad(code, detail, field):
    return DomainError(400, code, detail, field=field)


def _instant(value, tz_name, field):
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=times.zone(tz_name))
        return moment.astimezone(dt.UTC)
    raise _bad("invalid", f"{field}: a date-time is needed (ISO 8601).", field)


def event_write(data, *, calendar, existing=None):
    """Validate the client's fields (already typed by the serializer) into an EventWrite.

    end before start, an unknown zone, a malformed recurrence are 400s naming the field; nothing is sent.
    A PATCH that touches any time field is completed from the stored event, so the provider gets a whole move.
    """
    values = {}
    for key in ("title", "description", "location", "attendees", "reminders", "visibility"):
        if key in data:
            values[key] = data[key]
    if "visibility" in values and values["visibility"] not in VISIBILITY:
        raise _bad("invalid", f"visibility: one of {', '.join(VISIBILITY)}.", "visibility")
    time_keys = {"start", "end", "start_date", "end_date", "all_day", "time_zone"}
    if existing is None or time_keys & set(data):
        tz_name = data.get("time_zone") or (existing.time_zone if existing else calendar.time_zone) or "UTC"
        times.zone(tz_name)
        all_day = data.get("all_day")
        if all_day is None:
            all_day = (
                ("start_date" in data)
                if existing is None or "start_date" in data or "start" in data
                else existing.all_day
            )
        if all_day:
            start_date = data.get("start_date") or (existing.start_date if existing else None)
            end_date = data.get("end_date") or (existing.end_date if existing and "start_date" not in data else None)
            if start_date is None:
                raise _bad("invalid", "start_date: an all-day event needs start_date (YYYY-MM-DD).", "start_date")
            if end_date is None and existing is not None and existing.all_day and existing.start_date:
                # A move keeps the event's length, as a timed event's does (a three-day event stays three days).
                length = (existing.end_date or existing.start_date + dt.timedelta(days=1)) - existing.start_date
                end_date = start_date + length
            end_date = end_date or start_date + dt.timedelta(days=1)
            if end_date <= start_date:
                raise _bad(
                    "invalid_time_range",
                    "end_date must be after start_date (it is exclusive: the day after).",
                    "end_date",
                )
            values.update(all_day=True, start_date=start_date, end_date=end_date, time_zone=tz_name)
        else:
            start = (
                _instant(data["start"], tz_name, "start") if "start" in data else (existing.start if existing else None)
            )
            end = _instant(data["end"], tz_name, "end") if "end" in data else None
            if start is None:
                raise _bad("invalid", "start: a timed event needs start (ISO 8601 date-time).", "start")
            if end is None and existing is not None and existing.start and existing.end:
                end = start + (existing.end - existing.start)
            if end is None:
                raise _bad("invalid", "end: a timed event needs end (ISO 8601 date-time).", "end")
            if end <= start:
                raise _bad("invalid_time_range", "end must be after start.", "end")
            values.update(all_day=False, start=start, end=end, time_zone=tz_name)
    if "recurrence" in data:
        recurrence.years_check(data["recurrence"])
        values["recurrence"] = data["recurrence"]
    return EventWrite(**values)
