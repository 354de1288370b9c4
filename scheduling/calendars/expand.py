"""A calendar's events in a window with every recurring series expanded: GET .../events/?expand=true&start=&end=.

Read from the synced rows, without a provider call. Each series master's RRULE
is expanded with dateutil in the event's own IANA zone from its wall-clock start
(recurrence.occurrences), so a weekly 09:00 in New York stays 09:00 across the
DST changes while its UTC instant moves by the hour; all-day series are dates
and never shift. EXDATEs are left out. An occurrence that has its own row (an
exception: `recurring_event_id` + `original_start`; Graph calendars store every
synced occurrence that way) is answered from that row instead of the rule:
moved, retitled, or left out when it is cancelled. An exception moved into the
window from outside it is included, one moved out of it is not. Single events
that overlap the window are answered as they are; cancelled events never are.

Each occurrence names the row that answers for it (`event`: the master's for a
planned occurrence), its series (`series`, `recurring_event_id`) and its
planned start (`original_start`, what PATCH/DELETE take with scope=this).
"""

import datetime as dt
from dataclasses import dataclass

from integrations.errors import DomainError

from ..models import CalendarEvent
from . import recurrence, times
from .services import event_list

MAX_WINDOW_DAYS = 366
MAX_OCCURRENCES = 5000
CANCELLED = CalendarEvent.Status.CANCELLED


@dataclass
class Occurrence:
    row: CalendarEvent  # the row whose fields describe it (the master for a planned occurrence)
    series: CalendarEvent | None
    all_day: bool
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    original_start: str | None = None

    @property
    def sort_key(self):
        moment = self.start or dt.datetime.combine(self.start_date, dt.time(0, 0), tzinfo=dt.UTC)
        return moment, self.row.pk

    # What the serializer reads.
    @property
    def event(self):
        return self.row.pk

    @property
    def series_id(self):
        return self.series.pk if self.series else None

    @property
    def recurring_event_id(self):
        return self.series.external_id if self.series else self.row.recurring_event_id

    @property
    def start_local(self):
        return times.wall(self.start, self.row.time_zone).isoformat() if self.start else None

    @property
    def end_local(self):
        return times.wall(self.end, self.row.time_zone).isoformat() if self.end else None


def window_check(start, end):
    """An expansion needs a bounded window: both ends, end after start, at most MAX_WINDOW_DAYS."""
    if start is None:
        raise DomainError(400, "invalid", "start: expand=true needs a window; give start and end.", field="start")
    if end is None:
        raise DomainError(400, "invalid", "end: expand=true needs a window; give start and end.", field="end")
    if end <= start:
        raise DomainError(400, "invalid", "end: must be after start.", field="end")
    if end - start > dt.timedelta(days=MAX_WINDOW_DAYS):
        raise DomainError(400, "invalid", f"end: an expanded window spans at most {MAX_WINDOW_DAYS} days.", field="end")


def _overlaps(item, start, end):
    if item.all_day:
        last = (end - dt.timedelta(microseconds=1)).date()
        return item.start_date <= last and item.end_date > start.date()
    return item.start < end and item.end > start


def _as_is(row, series=None):
    original = None
    if row.original_start is not None:
        original = row.original_start.date().isoformat() if row.all_day else times.rfc3339(row.original_start)
    end_date = row.end_date or (row.start_date + dt.timedelta(days=1) if row.start_date else None)
    return Occurrence(
        row=row,
        series=series,
        all_day=row.all_day,
        start=row.start,
        end=row.end,
        start_date=row.start_date,
        end_date=end_date,
        original_start=original,
    )


def _planned(master, start, end, budget):
    """The master's planned occurrences that overlap [start, end), EXDATEs left out (more than `budget` only
    when there are more than `budget`)."""
    if master.all_day:
        days = (master.end_date - master.start_date) if master.end_date else dt.timedelta(days=1)
        lo, hi = start.date() - days, end.date() + dt.timedelta(days=1)
        first, length = master.start_date, days
    else:
        length = master.end - master.start
        lo, hi, first = start - length, end, master.start
    found = recurrence.occurrences(
        master.recurrence,
        start=first,
        tz_name=master.time_zone,
        all_day=master.all_day,
        window_start=lo,
        window_end=hi,
        # The query window is a little wider than the overlap (at most three occurrences touch it at its edges
        # without overlapping): one more than that still tells "more than the budget" from "all of them".
        limit=budget + 4,
    )
    out = []
    for planned in found:
        if master.all_day:
            item = Occurrence(
                row=master,
                series=master,
                all_day=True,
                start_date=planned,
                end_date=planned + length,
                original_start=planned.isoformat(),
            )
        else:
            item = Occurrence(
                row=master,
                series=master,
                all_day=False,
                start=planned,
                end=planned + length,
                original_start=times.rfc3339(planned),
            )
        if _overlaps(item, start, end):
            out.append((planned, item))
    return out


def _planned_key(row, all_day):
    """How an exception row names the occurrence it replaces: its planned date (all-day) or UTC instant."""
    if row.original_start is None:
        return None
    return row.original_start.date() if all_day else row.original_start


def event_occurrences(*, owner, calendar_id, start, end):
    """The calendar's events overlapping [start, end), series expanded into occurrences, in start order."""
    window_check(start, end)
    rows = list(event_list(owner=owner, calendar_id=calendar_id, start=start, end=end))
    masters = {r.external_id: r for r in rows if r.recurrence and not r.recurring_event_id}
    exceptions = {}
    for row in CalendarEvent.objects.filter(calendar_id=calendar_id, recurring_event_id__in=list(masters)):
        exceptions.setdefault(row.recurring_event_id, []).append(row)

    singles = [r for r in rows if r.external_id not in masters and r.recurring_event_id not in masters]
    out = [item for item in (_as_is(r) for r in singles if _shown(r)) if _overlaps(item, start, end)]
    for master in masters.values():
        if not _shown(master):
            continue
        own = exceptions.get(master.external_id, [])
        replaced = {_planned_key(r, master.all_day) for r in own}
        budget = max(MAX_OCCURRENCES - len(out), 0)
        out += [item for planned, item in _planned(master, start, end, budget) if planned not in replaced]
        moved = (_as_is(r, series=master) for r in own if _shown(r))
        out += [item for item in moved if _overlaps(item, start, end)]
        if len(out) > MAX_OCCURRENCES:
            break
    if len(out) > MAX_OCCURRENCES:
        raise DomainError(
            400,
            "too_many_occurrences",
            f"end: more than {MAX_OCCURRENCES} events and occurrences in this window; ask for a shorter one.",
            field="end",
        )
    out.sort(key=lambda item: item.sort_key)
    return out


def _shown(row):
    return row.status != CANCELLED and (row.start is not None or row.start_date is not None)
