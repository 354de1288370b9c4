"""The local row of a provider's event: upsert it and announce the change after commit."""

import datetime as dt

from django.db import transaction
from django.utils import timezone

from ... import availability
from ...models import CalendarEvent
from ...signals import calendar_event_changed
from .. import times


def event_store(calendar, data):
    """Upsert the row for the provider's event; returns (row, changed). A cancelled stub keeps the known fields."""
    with transaction.atomic():
        row = CalendarEvent.objects.select_for_update().filter(calendar=calendar, external_id=data.external_id).first()
        if row is not None and _older(data, row):
            # A sync reads the provider, then stores what it read: an edit through the API stored in between
            # (or a later sync) holds a newer copy, which the older one must not put back.
            return row, False
        return _upsert(calendar, row, data)


def _older(data, row):
    return bool(data.provider_updated_at and row.provider_updated_at) and (
        data.provider_updated_at < row.provider_updated_at
    )


def _upsert(calendar, row, data):
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


def _cancelled(calendar, rows):
    """Mark the rows cancelled and announce each one, so the meetings attached to any of them follow."""
    rows = list(rows.exclude(status=CalendarEvent.Status.CANCELLED))
    CalendarEvent.objects.filter(pk__in=[r.pk for r in rows]).update(
        status=CalendarEvent.Status.CANCELLED, synced_at=timezone.now()
    )
    for row in rows:
        row.status = CalendarEvent.Status.CANCELLED
    announce(calendar, rows, origin="api")


def _series_rows_from(calendar, master, original):
    """The rows of the series' occurrences planned at `original` (a UTC instant, or a date for an all-day
    series) or later: its moved or edited ones, and on Graph calendars every synced one."""
    if not isinstance(original, dt.datetime):
        original = dt.datetime.combine(original, dt.time(0, 0), tzinfo=dt.UTC)  # all-day: the date at 00:00 UTC
    return CalendarEvent.objects.filter(
        calendar=calendar, recurring_event_id=master.external_id, original_start__gte=original
    )
