"""Event verbs: list, read, create, update and delete, with the recurrence scope (this, following, all)."""

import datetime as dt

from django.db.models import Q
from django.utils import timezone

from integrations.errors import DomainError

from ...models import CalendarEvent
from .. import recurrence
from ..types import EventWrite
from .calendars import _calendar_conn, adapter_for, calendar_get
from .inputs import _bad, event_write
from .rows import _cancelled, _stored, announce
from .series import _master, _occurrence_id, _original, _series_start, _split, _tail_end

SCOPES = ("this", "following", "all")


def event_list(*, owner, calendar_id, start=None, end=None):
    """The calendar's stored events (synced first if never synced), optionally those touching a window.

    An all-day event has dates, no zone: it touches the window when one of its days is a day the window covers in
    the window's own offset (a window given at +09:00 holds the all-day events of Tokyo's days), as Google's
    events.list counts them in the zone it is asked in."""
    calendar = calendar_get(owner=owner, calendar_id=calendar_id)
    if calendar.last_synced_at is None:
        _calendar_conn(calendar, "read")
        from ..sync import calendar_sync

        calendar_sync(calendar_id=calendar.pk)
    rows = CalendarEvent.objects.filter(calendar=calendar)
    if start is not None and end is not None:
        # Series masters always (their occurrences may fall in the window), else what overlaps it.
        timed = Q(all_day=False, start__lt=end, end__gt=start)
        last_day = (end - dt.timedelta(microseconds=1)).date()  # the end is exclusive: midnight starts no day
        days = Q(all_day=True, start_date__lte=last_day, end_date__gt=start.date())
        rows = rows.filter(timed | days | ~Q(recurrence=[]))
    return rows.order_by("start", "start_date", "pk")


def event_get(*, owner, calendar_id, event_id):
    # calendar__pk, not calendar_id: Django range-checks a key's own lookup, so an id past 2**63 finds nothing
    # instead of reaching the database (SQLite raises OverflowError on it).
    row = CalendarEvent.objects.filter(pk=event_id, calendar__pk=calendar_id, calendar__owner=owner).first()
    if row is None:
        raise DomainError(404, "not_found", "No such event in this calendar.")
    return row


def event_create(*, owner, calendar_id, data, notify=True, idempotency_key=""):
    """Create the event at the provider, then store it. With the client's Idempotency-Key, a retry of a create
    whose answer was lost (a 502 leaves no idempotency record) finds the event the first attempt made (Google:
    the same client-chosen id; Graph: the same transactionId) instead of making a second one."""
    calendar = calendar_get(owner=owner, calendar_id=calendar_id)
    conn = _calendar_conn(calendar, "write")
    write = event_write(data, calendar=calendar)
    created = adapter_for(calendar).event_insert(conn, calendar, write, notify=notify, idempotency_key=idempotency_key)
    if created.status == CalendarEvent.Status.CANCELLED:
        raise DomainError(
            409,
            "event_deleted",
            "An earlier attempt of this create (same Idempotency-Key) made the event, and it has been deleted "
            "since; to make it again, send the create with a new Idempotency-Key.",
        )
    return _stored(calendar, created)


def _scope(row, scope, original_start):
    recurring = bool(row.recurrence) or bool(row.recurring_event_id)
    if scope is None:
        return ("this" if row.recurring_event_id else "all") if recurring else "all"
    if scope not in SCOPES:
        raise _bad("invalid", f"scope: one of {', '.join(SCOPES)}.", "scope")
    if not recurring and scope != "all":
        raise _bad("invalid", "scope: this event does not recur; leave scope out.", "scope")
    if row.recurrence and not row.recurring_event_id and scope in ("this", "following") and original_start is None:
        raise _bad(
            "invalid",
            "original_start: name the occurrence of the series (its planned start) for scope=this or following.",
            "original_start",
        )
    if original_start is not None and not row.all_day and not isinstance(original_start, dt.datetime):
        raise _bad(
            "invalid",
            "original_start: this series is timed; give the occurrence's date-time with its offset.",
            "original_start",
        )
    return scope


def _changing(owner, calendar_id, event_id, scope, original_start):
    """(row, calendar, connection, scope, adapter) for a change to one of the owner's events."""
    row = event_get(owner=owner, calendar_id=calendar_id, event_id=event_id)
    calendar = row.calendar
    return row, calendar, _calendar_conn(calendar, "write"), _scope(row, scope, original_start), adapter_for(calendar)


def event_update(*, owner, calendar_id, event_id, data, scope=None, original_start=None, notify=True):
    row, calendar, conn, scope, adapter = _changing(owner, calendar_id, event_id, scope, original_start)
    if scope == "this" and (row.recurring_event_id or row.recurrence):
        if "recurrence" in data:
            raise _bad("invalid", "recurrence: one occurrence cannot recur; use scope=all or following.", "recurrence")
        target = _occurrence_id(calendar, conn, row, original_start)
        base = CalendarEvent.objects.filter(calendar=calendar, external_id=target).first() or row
        write = event_write(data, calendar=calendar, existing=base)
        return _stored(calendar, adapter.event_patch(conn, calendar, target, write, notify=notify))
    if scope == "following":
        master = _master(calendar, conn, row)
        return _split(calendar, conn, master, _original(row, original_start), data, notify=notify)
    master = _master(calendar, conn, row)
    write = event_write(data, calendar=calendar, existing=master)
    updated = _stored(calendar, adapter.event_patch(conn, calendar, master.external_id, write, notify=notify))
    return updated if master.pk != row.pk else CalendarEvent.objects.get(pk=updated.pk)


def event_delete(*, owner, calendar_id, event_id, scope=None, original_start=None, notify=True):
    """Delete (cancel) the event, one occurrence, or the series from an occurrence on. Gone already = done."""
    row, calendar, conn, scope, adapter = _changing(owner, calendar_id, event_id, scope, original_start)
    if scope == "this" and (row.recurring_event_id or row.recurrence):
        target = _occurrence_id(calendar, conn, row, original_start)
        adapter.event_delete(conn, calendar, target, notify=notify)
        occurrence = CalendarEvent.objects.get(calendar=calendar, external_id=target)
    elif scope == "following":
        master = _master(calendar, conn, row)
        original = _original(row, original_start)
        if original > _series_start(master):
            lines = recurrence.truncated_before(
                master.recurrence,
                original_start=original,
                tz_name=master.time_zone,
                all_day=master.all_day,
                series_start=_series_start(master),
            )
            _stored(
                calendar,
                adapter.event_patch(conn, calendar, master.external_id, EventWrite(recurrence=lines), notify=notify),
            )
            _tail_end(calendar, conn, master, original, notify=notify)
            return
        adapter.event_delete(conn, calendar, master.external_id, notify=notify)
        occurrence = master
    else:
        master = _master(calendar, conn, row)
        adapter.event_delete(conn, calendar, master.external_id, notify=notify)
        occurrence = master
    CalendarEvent.objects.filter(pk=occurrence.pk).update(
        status=CalendarEvent.Status.CANCELLED, synced_at=timezone.now()
    )
    occurrence.status = CalendarEvent.Status.CANCELLED
    announce(calendar, [occurrence], origin="api")
    if scope != "this":
        # The series is gone with its occurrences: each occurrence row may carry a meeting of its own (Graph).
        _cancelled(calendar, CalendarEvent.objects.filter(calendar=calendar, recurring_event_id=master.external_id))
