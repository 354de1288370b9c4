"""EventWrite to a Graph event body, with the check that each EXDATE names a planned occurrence."""

import datetime as dt

from integrations.errors import DomainError

from .. import recurrence, times

VISIBILITY = {"default": "normal", "public": "normal", "private": "private", "confidential": "confidential"}


def _wall(moment, tz_name):
    return times.wall(moment, tz_name).strftime("%Y-%m-%dT%H:%M:%S")


def event_body(write, *, first_day=None, tz_name=None, start_time=dt.time(0, 0), series_start=None, all_day=None):
    """The Graph body and the EXDATEs to delete after it is written; a recurrence Graph cannot express, or an
    EXDATE that is not an occurrence of the series, is a 400 naming it (before anything is sent).

    `first_day`, `tz_name`, `start_time`, `series_start` and `all_day` describe the stored series when the
    write changes the recurrence without moving the event."""
    body = {}
    if write.title is not None:
        body["subject"] = write.title
    if write.description is not None:
        body["body"] = {"contentType": "text", "content": write.description}
    if write.location is not None:
        body["location"] = {"displayName": write.location}
    if write.moves:
        zone = times.windows_name(write.time_zone)
        if write.all_day:
            body["start"] = {"dateTime": f"{write.start_date.isoformat()}T00:00:00", "timeZone": zone}
            body["end"] = {"dateTime": f"{write.end_date.isoformat()}T00:00:00", "timeZone": zone}
        else:
            body["start"] = {"dateTime": _wall(write.start, write.time_zone), "timeZone": zone}
            body["end"] = {"dateTime": _wall(write.end, write.time_zone), "timeZone": zone}
        body["isAllDay"] = bool(write.all_day)
    if write.attendees is not None:
        body["attendees"] = [
            {
                "emailAddress": {"address": a["email"], "name": a.get("name") or ""},
                "type": "optional" if a.get("optional") else "required",
            }
            for a in write.attendees
        ]
    if write.reminders is not None:
        overrides = write.reminders.get("overrides") or []
        body["isReminderOn"] = bool(overrides) or bool(write.reminders.get("use_default", True))
        body["reminderMinutesBeforeStart"] = overrides[0]["minutes"] if overrides else 15
    if write.visibility is not None:
        body["sensitivity"] = VISIBILITY[write.visibility]
    exdates = []
    if write.recurrence is not None:
        rule, exdates = recurrence.split(write.recurrence)
        if rule is None:
            body["recurrence"] = None
        else:
            if write.moves:
                tz_name, all_day = write.time_zone, write.all_day
                series_start = write.start_date if write.all_day else write.start
                first_day = write.start_date if write.all_day else times.wall(write.start, tz_name).date()
                start_time = (
                    dt.time(0, 0) if write.all_day else times.wall(write.start, tz_name).time().replace(tzinfo=None)
                )
            body["recurrence"] = recurrence.to_graph(rule, first_day=first_day, tz_name=tz_name, start_time=start_time)
            _check_exdates(rule, exdates, series_start=series_start, tz_name=tz_name, all_day=all_day)
    return body, exdates


def _check_exdates(rule, exdates, *, series_start, tz_name, all_day):
    """Each EXDATE must be a planned occurrence: Graph keeps no exclusion list, so one that names no occurrence
    could only be dropped without a word (the answer would not carry it)."""
    lines = [recurrence.format_rule(rule)]
    for value in exdates:
        timed = isinstance(value, dt.datetime)
        found = series_start is not None and timed != bool(all_day)
        if found:
            found = bool(
                recurrence.occurrences(
                    lines,
                    start=series_start,
                    tz_name=tz_name,
                    all_day=bool(all_day),
                    window_start=value,
                    window_end=value,
                    limit=1,
                )
            )
        if not found:
            label = times.wall(value, tz_name).strftime("%Y-%m-%dT%H:%M:%S") if timed else value.isoformat()
            raise DomainError(
                400,
                "invalid_recurrence",
                f"recurrence: EXDATE {label} ({tz_name}) is not an occurrence of this series. Microsoft calendars "
                "keep no list of exclusions: an EXDATE must name a planned occurrence (its start in the event's "
                "zone, or its date for an all-day series), which is then deleted.",
                field="recurrence",
                part=f"EXDATE {label}",
            )
