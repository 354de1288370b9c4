"""Graph calendar calls: list calendars, read, write, delete events and find an occurrence."""

import datetime as dt

from integrations.errors import PermanentError

from .. import times
from ..create_id import create_id, graph_transaction_refused
from ..types import CalendarData
from .bodies import event_body
from .client import _call, _gone, _pages
from .shapes import EVENT_SELECT, event_data


def calendars_list(conn):
    out, zone = [], _mailbox_zone(conn)
    for page in _pages(conn, "calendars.list", "/me/calendars", params={"$top": "100"}):
        for item in page.get("value") or []:
            out.append(
                CalendarData(
                    external_id=item["id"],
                    name=item.get("name") or item["id"],
                    primary=bool(item.get("isDefaultCalendar")),
                    time_zone=zone,
                    access_role="owner"
                    if item.get("isDefaultCalendar")
                    else ("writer" if item.get("canEdit") else "reader"),
                    raw=item,
                )
            )
    return out


def _mailbox_zone(conn):
    """The mailbox's own time zone (mailboxSettings.timeZone, Windows or IANA), for events without one."""
    try:
        answer = _call(conn, "mailboxSettings.get", "GET", "/me/mailboxSettings/timeZone")
    except PermanentError:
        return "UTC"  # MailboxSettings.Read not granted: UTC, each event still carries its own zone
    return times.from_provider_zone(answer.get("value") or "UTC")


def _exclude(conn, calendar, series_id, exdates):
    for moment in exdates:
        found = instance_at(conn, calendar, series_id, moment)
        if found is not None:
            event_delete(conn, calendar, found.external_id)


def event_insert(conn, calendar, write, *, notify=True, idempotency_key=""):
    """POST the event. With the client's Idempotency-Key it carries a transactionId (calendars.create_id), which
    Graph keeps "to avoid redundant POST operations in case of client retries to create the same event" (event
    resource): a retry of a create whose answer was lost is answered with the event that attempt made, not a
    second one. Graph refuses a transactionId that "has already been used to create a different event"
    (ErrorDuplicateTransactionId). The id covers the event body, so the hub never sends it with another event;
    should Graph still say so, the client gets a conflict asking for a new key, not a provider failure."""
    body, exdates = event_body(write)
    if idempotency_key:
        body["transactionId"] = create_id(
            conn, calendar.external_id, idempotency_key, {"event": body, "exdates": exdates}
        )
    with graph_transaction_refused(idempotency_key):
        created = _call(conn, "event.create", "POST", f"/me/calendars/{calendar.external_id}/events", json=body)
    if exdates:
        # Also on a retry answered with the event already made: the lost attempt never got to delete them, and
        # an occurrence already deleted is not found again.
        _exclude(conn, calendar, created["id"], exdates)
        return event_get(conn, calendar, created["id"])  # read back: the deletions as cancelledOccurrences
    return event_data(created, calendar_zone=calendar.time_zone)


def event_patch(conn, calendar, event_id, write, *, notify=True):
    series = {}
    if write.recurrence is not None and not write.moves:
        current = event_get(conn, calendar, event_id)
        series = {"tz_name": current.time_zone, "all_day": current.all_day}
        if current.all_day:
            series.update(first_day=current.start_date, series_start=current.start_date)
        else:
            local = times.wall(current.start, current.time_zone)
            series.update(
                first_day=local.date(), start_time=local.time().replace(tzinfo=None), series_start=current.start
            )
    body, exdates = event_body(write, **series)
    answer = _call(conn, "event.update", "PATCH", f"/me/events/{event_id}", json=body)
    if exdates:
        _exclude(conn, calendar, event_id, exdates)
    if exdates or answer.get("type") == "seriesMaster":
        # A PATCH answers no cancelledOccurrences: read the series back, or its EXDATEs would be lost.
        return event_get(conn, calendar, event_id)
    return event_data(answer, calendar_zone=calendar.time_zone)


def event_get(conn, calendar, event_id):
    answer = _call(conn, "event.get", "GET", f"/me/events/{event_id}", params={"$select": EVENT_SELECT})
    return event_data(answer, calendar_zone=calendar.time_zone)


def event_delete(conn, calendar, event_id, *, notify=True):
    """DELETE: an organizer's delete sends the attendees the cancellation. Gone already counts as done."""
    try:
        _call(conn, "event.delete", "DELETE", f"/me/events/{event_id}")
    except PermanentError as exc:
        if _gone(exc):
            return False
        raise
    return True


def is_exception(row):
    """Whether the occurrence row is an event of its own at Graph (an exception: a changed occurrence). A plain
    occurrence (type "occurrence"; the sync stores every one) is computed from the series and ends with it."""
    return bool(row.recurring_event_id) and (row.raw or {}).get("type") == "exception"


def instance_at(conn, calendar, series_id, original_start):
    """The occurrence of the series planned for `original_start` (GET .../instances around it)."""
    if isinstance(original_start, dt.datetime):
        lo, hi = original_start - dt.timedelta(minutes=1), original_start + dt.timedelta(days=1)
    else:
        lo = dt.datetime.combine(original_start, dt.time(0, 0), tzinfo=dt.UTC) - dt.timedelta(days=1)
        hi = lo + dt.timedelta(days=3)
    page = _call(
        conn,
        "event.instances",
        "GET",
        f"/me/events/{series_id}/instances",
        params={"startDateTime": times.rfc3339(lo), "endDateTime": times.rfc3339(hi)},
    )
    for item in page.get("value") or []:
        data = event_data(item, calendar_zone=calendar.time_zone)
        planned = data.original_start
        if isinstance(original_start, dt.datetime) and planned == original_start:
            return data
        if not isinstance(original_start, dt.datetime) and data.start_date == original_start:
            return data
    return None
