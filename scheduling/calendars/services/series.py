"""Recurring series: find the master and an occurrence, and split a series for "this and following"."""

import dataclasses
import datetime as dt

from integrations.errors import DomainError

from ...models import CalendarEvent
from .. import recurrence
from ..types import EventWrite
from .calendars import adapter_for
from .inputs import _bad, _instant, event_write
from .rows import _cancelled, _series_rows_from, _stored, event_store


def _master(calendar, conn, row):
    """The series master of an occurrence row (stored, or read from the provider)."""
    if not row.recurring_event_id:
        return row
    master = CalendarEvent.objects.filter(calendar=calendar, external_id=row.recurring_event_id).first()
    if master is None:
        master, _ = event_store(calendar, adapter_for(calendar).event_get(conn, calendar, row.recurring_event_id))
    return master


def _occurrence_id(calendar, conn, row, original_start):
    """The provider's id of the occurrence: the row's own, or the one planned for original_start."""
    if row.recurring_event_id:
        return row.external_id
    found = adapter_for(calendar).instance_at(conn, calendar, row.external_id, original_start)
    if found is None:
        raise DomainError(404, "not_found", "The series has no occurrence planned at original_start.")
    event_store(calendar, found)
    return found.external_id


def _original(row, original_start):
    if row.recurring_event_id:
        if row.all_day and row.original_start:
            return row.original_start.date()
        return row.original_start
    if row.all_day and isinstance(original_start, dt.datetime):
        return original_start.date()
    return original_start


def _series_start(master):
    return master.start_date if master.all_day else master.start


def _split(calendar, conn, master, original, data, *, notify):
    """ "This and following": a new series from the occurrence on, with the changes; the old one ends before it."""
    if original is None:
        raise _bad("invalid", "original_start: the occurrence to split the series at.", "original_start")
    adapter = adapter_for(calendar)
    first = _series_start(master)
    kwargs = {"tz_name": master.time_zone, "all_day": master.all_day, "series_start": first}
    if original <= first:  # from the first occurrence on: the whole series
        write = event_write(data, calendar=calendar, existing=master)
        return _stored(calendar, adapter.event_patch(conn, calendar, master.external_id, write, notify=notify))
    fields = {
        "title": master.title,
        "description": master.description,
        "location": master.location,
        "attendees": [
            {"email": a["email"], "name": a.get("name", ""), "optional": a.get("optional", False)}
            for a in master.attendees
        ],
        "visibility": master.visibility,
        "time_zone": master.time_zone,
        "recurrence": recurrence.remaining(master.recurrence, original_start=original, **kwargs),
    }
    if master.reminders:
        fields["reminders"] = master.reminders
    if master.all_day:
        fields.update(all_day=True, start_date=original, end_date=original + (master.end_date - master.start_date))
    else:
        fields.update(all_day=False, start=original, end=original + (master.end - master.start))
    fields.update(data)
    if not master.all_day and "start" in data and "end" not in data:
        moved = _instant(data["start"], fields["time_zone"], "start")
        fields["end"] = moved + (master.end - master.start)
    write = event_write(fields, calendar=calendar)
    if "recurrence" not in data:
        lines = recurrence.exdates_moved(
            fields["recurrence"],
            old_first=original,
            old_zone=master.time_zone,
            new_first=write.start_date if write.all_day else write.start,
            new_zone=write.time_zone,
        )
        write = dataclasses.replace(write, recurrence=lines)
    created = adapter.event_insert(conn, calendar, write, notify=notify)
    ended = EventWrite(recurrence=recurrence.truncated_before(master.recurrence, original_start=original, **kwargs))
    _stored(calendar, adapter.event_patch(conn, calendar, master.external_id, ended, notify=notify))
    _tail_end(calendar, conn, master, original, notify=notify)
    return _stored(calendar, created)


def _tail_end(calendar, conn, master, original, *, notify):
    """The rows of a series that now ends before `original` (its occurrences planned from then on) go with it.

    Without this a moved or edited occurrence of the old tail would stay alive beside the occurrence that a new
    series ("this and following") has at the same place, and on Graph calendars every synced occurrence would.
    An exception is an event of its own at the provider, which need not end with the shortened series (a sync
    would then bring it back), so it is deleted there too; gone already counts as done. Each row is announced
    cancelled, so a meeting attached to one of them follows.
    """
    adapter = adapter_for(calendar)
    rows = _series_rows_from(calendar, master, original).exclude(status=CalendarEvent.Status.CANCELLED)
    for row in rows:
        if adapter.is_exception(row):
            adapter.event_delete(conn, calendar, row.external_id, notify=notify)
    _cancelled(calendar, rows)
