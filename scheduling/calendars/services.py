"""Calendar verbs: list calendars, read and write events (with recurrence scopes), for views, tasks and handlers.

Every write goes to the provider first through the connection's adapter
(google.py or graph.py: one gateway attempt per request), and the local row is
then updated from the provider's answer, so a row always says what the provider
says. After a write the availability cache of that connection is dropped and
`calendar_event_changed` is sent with origin="api": a person moved or
cancelled the event through the hub, so an attached Zoom/Webex meeting follows
(only origin="hub", a meeting's own echo, is ignored by scheduling.consistency).
The sync that later reads the same change finds the etag it stored and sends
nothing. Sync (sync.py) keeps the rows current when the change comes from
elsewhere.

Recurring events: a series master row carries the RRULE/EXDATE lines; an
occurrence that was changed or cancelled has its own row (recurring_event_id +
original_start). `scope` says what a PATCH or DELETE of a recurring event
touches: `this` occurrence, `this and following` (the series is split: the
master ends before it, a new series takes over) or `all` (the master). On a
master, `this` and `following` name the occurrence by `original_start`.
"""

import dataclasses
import datetime as dt

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations import oauth
from integrations.errors import DomainError
from integrations.models import Connection
from integrations.task_base import enqueue_on_commit

from .. import availability
from ..models import Calendar, CalendarEvent
from ..signals import calendar_event_changed
from . import recurrence, times
from .types import EventWrite

KINDS = {"google_oauth": Calendar.Kind.GOOGLE, "microsoft_oauth": Calendar.Kind.MICROSOFT}
CAL = "https://www.googleapis.com/auth/calendar."
NEED = {
    "read": {
        "google_oauth": [(f"{CAL}events", f"{CAL}readonly")],
        "microsoft_oauth": [("Calendars.ReadWrite", "Calendars.Read")],
    },
    "write": {"google_oauth": [f"{CAL}events"], "microsoft_oauth": ["Calendars.ReadWrite"]},
}
LIST_FRESH_SECONDS = 300
SCOPES = ("this", "following", "all")
VISIBILITY = ("default", "public", "private", "confidential")


def adapter_for(calendar):
    if calendar.kind == Calendar.Kind.GOOGLE:
        from . import google

        return google
    from . import graph

    return graph


def _connection(*, owner, connection_id, verb):
    provider = Connection.objects.filter(pk=connection_id, owner=owner).values_list("provider", flat=True).first()
    if provider not in KINDS:
        raise DomainError(
            404, "connection_not_found", "No such calendar connection; list yours at /api/v1/connections/."
        )
    return oauth.connection_for(
        owner=owner, connection_id=connection_id, capability="calendar", need=NEED[verb][provider]
    )


# --- Calendars --------------------------------------------------------------------------------


def _listed_key(connection_id):
    return f"calendars:listed:{connection_id}"


def calendars_refresh(*, connection):
    """Upsert the connection's calendars from the provider; calendars it no longer lists are removed."""
    kind = KINDS[connection.provider]
    found = adapter_for(Calendar(kind=kind)).calendars_list(connection)
    new = []
    with transaction.atomic():
        for item in found:
            row, created = Calendar.objects.update_or_create(
                connection=connection,
                external_id=item.external_id,
                defaults={
                    "owner_id": connection.owner_id,
                    "kind": kind,
                    "name": item.name[:255],
                    "primary": item.primary,
                    "time_zone": item.time_zone,
                    "access_role": item.access_role,
                    "raw": item.raw,
                },
            )
            if created:
                new.append(row.pk)
        Calendar.objects.filter(connection=connection).exclude(external_id__in=[c.external_id for c in found]).delete()
        if push_automatic(kind):
            from ..tasks import calendar_watch_task

            for pk in new:
                enqueue_on_commit(calendar_watch_task, pk)
    cache.set(_listed_key(connection.pk), True, LIST_FRESH_SECONDS)


def push_automatic(kind):
    """Push starts by itself for a newly listed calendar when the provider can reach the hub: an HTTPS APP_URL
    (both providers refuse anything else) and, for Google, the channel secret. Else POST .../watch/ says why."""
    if not settings.CALENDAR_PUSH_AUTO or not settings.APP_URL.startswith("https://"):
        return False
    return kind != Calendar.Kind.GOOGLE or bool(settings.GOOGLE_CALENDAR_CHANNEL_SECRET)


def calendar_list(*, owner, refresh=False):
    """The owner's calendars of every active Google/Microsoft connection with the calendar capability."""
    # Filtered in Python: JSON containment is PostgreSQL-only and `make run` uses SQLite.
    connections = [
        c
        for c in Connection.objects.filter(owner=owner, provider__in=list(KINDS), status=Connection.Status.ACTIVE)
        if "calendar" in (c.capabilities or [])
    ]
    for conn in connections:
        if refresh or not cache.get(_listed_key(conn.pk)):
            calendars_refresh(connection=_connection(owner=owner, connection_id=conn.pk, verb="read"))
    return Calendar.objects.filter(owner=owner, connection__in=connections).select_related("connection")


def calendar_push_start(*, owner, calendar_id):
    """Start (or renew) push for the calendar and bring it up to date: what POST .../watch/ runs."""
    from .sync import calendar_sync, calendar_watch

    calendar = calendar_get(owner=owner, calendar_id=calendar_id)
    _calendar_conn(calendar, "read")
    if not settings.APP_URL.startswith("https://"):
        raise DomainError(
            409,
            "push_unreachable",
            f"Google and Microsoft deliver notifications to HTTPS URLs only; APP_URL is {settings.APP_URL}.",
        )
    calendar_watch(calendar_id=calendar.pk)
    calendar_sync(calendar_id=calendar.pk)
    return Calendar.objects.select_related("connection").get(pk=calendar.pk)


def calendar_get(*, owner, calendar_id):
    calendar = Calendar.objects.filter(pk=calendar_id, owner=owner).select_related("connection").first()
    if calendar is None:
        raise DomainError(404, "not_found", "No such calendar; list yours at /api/v1/calendars/.")
    return calendar


def _calendar_conn(calendar, verb):
    return _connection(owner=calendar.owner, connection_id=calendar.connection_id, verb=verb)


# --- Input --------------------------------------------------------------------------------------


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
        recurrence.split(data["recurrence"])
        values["recurrence"] = data["recurrence"]
    return EventWrite(**values)


# --- Rows ------------------------------------------------------------------------------------------


def event_store(calendar, data):
    """Upsert the row for the provider's event; returns (row, changed). A cancelled stub keeps the known fields."""
    row = CalendarEvent.objects.filter(calendar=calendar, external_id=data.external_id).first()
    if data.status == "cancelled" and data.start is None and data.start_date is None:
        if row is None:
            fields = data.row_fields()
        else:
            fields = {"status": "cancelled", "etag": data.etag or row.etag, "raw": data.raw}
            if data.recurring_event_id:
                fields.update(recurring_event_id=data.recurring_event_id, original_start=data.original_start)
    else:
        fields = data.row_fields()
    if row is None:
        row = CalendarEvent.objects.create(calendar=calendar, external_id=data.external_id, **fields)
        return row, True
    changed = (
        (row.etag != fields.get("etag", row.etag)) or row.status != fields.get("status", row.status) or not row.etag
    )
    for key, value in fields.items():
        setattr(row, key, value)
    row.save()
    return row, changed


def announce(calendar, rows, *, origin):
    """After commit: tell the meetings (scheduling.consistency) and drop the connection's cached free/busy."""
    if not rows:
        return
    availability.busy_cache_invalidate(calendar.connection_id)
    for row in rows:
        cancelled = row.status == CalendarEvent.Status.CANCELLED
        start, end = row.start, row.end
        if row.all_day and row.start_date:
            zone = times.zone(row.time_zone or "UTC")
            start = dt.datetime.combine(row.start_date, dt.time(0, 0), tzinfo=zone)
            end = dt.datetime.combine(row.end_date or row.start_date, dt.time(0, 0), tzinfo=zone)
        calendar_event_changed.send(
            sender=CalendarEvent,
            connection_id=calendar.connection_id,
            event_id=row.external_id,
            start=None if cancelled else start,
            end=None if cancelled else end,
            cancelled=cancelled,
            origin=origin,
        )


def _stored(calendar, data):
    row, _ = event_store(calendar, data)
    announce(calendar, [row], origin="api")
    return row


# --- Events ---------------------------------------------------------------------------------------


def event_list(*, owner, calendar_id, start=None, end=None):
    """The calendar's stored events (synced first if never synced), optionally those touching a window."""
    calendar = calendar_get(owner=owner, calendar_id=calendar_id)
    if calendar.last_synced_at is None:
        _calendar_conn(calendar, "read")
        from .sync import calendar_sync

        calendar_sync(calendar_id=calendar.pk)
    rows = CalendarEvent.objects.filter(calendar=calendar)
    if start is not None and end is not None:
        # Series masters always (their occurrences may fall in the window), else what overlaps it.
        timed = Q(all_day=False, start__lt=end, end__gt=start)
        days = Q(all_day=True, start_date__lt=end.date() + dt.timedelta(days=1), end_date__gt=start.date())
        rows = rows.filter(timed | days | ~Q(recurrence=[]))
    return rows.order_by("start", "start_date", "pk")


def event_get(*, owner, calendar_id, event_id):
    row = CalendarEvent.objects.filter(pk=event_id, calendar_id=calendar_id, calendar__owner=owner).first()
    if row is None:
        raise DomainError(404, "not_found", "No such event in this calendar.")
    return row


def event_create(*, owner, calendar_id, data, notify=True):
    calendar = calendar_get(owner=owner, calendar_id=calendar_id)
    conn = _calendar_conn(calendar, "write")
    write = event_write(data, calendar=calendar)
    created = adapter_for(calendar).event_insert(conn, calendar, write, notify=notify)
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


def event_update(*, owner, calendar_id, event_id, data, scope=None, original_start=None, notify=True):
    row = event_get(owner=owner, calendar_id=calendar_id, event_id=event_id)
    calendar = row.calendar
    conn = _calendar_conn(calendar, "write")
    scope = _scope(row, scope, original_start)
    adapter = adapter_for(calendar)
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
    return _stored(calendar, created)


def event_delete(*, owner, calendar_id, event_id, scope=None, original_start=None, notify=True):
    """Delete (cancel) the event, one occurrence, or the series from an occurrence on. Gone already = done."""
    row = event_get(owner=owner, calendar_id=calendar_id, event_id=event_id)
    calendar = row.calendar
    conn = _calendar_conn(calendar, "write")
    scope = _scope(row, scope, original_start)
    adapter = adapter_for(calendar)
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
            CalendarEvent.objects.filter(calendar=calendar, recurring_event_id=master.external_id).filter(
                original_start__gte=original
                if isinstance(original, dt.datetime)
                else dt.datetime.combine(original, dt.time(0, 0), tzinfo=dt.UTC)
            ).update(status=CalendarEvent.Status.CANCELLED)
            return
        adapter.event_delete(conn, calendar, master.external_id, notify=notify)
        occurrence = master
    else:
        master = _master(calendar, conn, row)
        adapter.event_delete(conn, calendar, master.external_id, notify=notify)
        occurrence = master
        CalendarEvent.objects.filter(calendar=calendar, recurring_event_id=master.external_id).update(
            status=CalendarEvent.Status.CANCELLED
        )
    CalendarEvent.objects.filter(pk=occurrence.pk).update(
        status=CalendarEvent.Status.CANCELLED, synced_at=timezone.now()
    )
    occurrence.status = CalendarEvent.Status.CANCELLED
    announce(calendar, [occurrence], origin="api")
