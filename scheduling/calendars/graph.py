"""Microsoft calendars over Microsoft Graph with httpx: the only module that speaks Graph for calendars.

Same client choice as Teams and mail: plain httpx with the connection's token
(`oauth.bearer_auth`), one request = one gateway attempt (provider
`microsoft_calendar`) = one ProviderCall, Graph's errors translated once
(freebusy.graph_translate: 429/503 with Retry-After retryable, other 4xx
permanent).

Times: Graph's dateTimeTimeZone names Windows zones ("Pacific Standard
Time"); they are mapped to IANA on the way in and IANA to Windows on the way
out. An event's own zone is `originalStartTimeZone`. All-day events are
midnight-to-midnight dateTimes with isAllDay: only their dates are kept.

Recurrence: recurrence.to_graph / from_graph. Graph keeps no exclusion list:
on a write, an EXDATE must name a planned occurrence of the series (else a 400
naming it, before anything is sent), and that occurrence is deleted right
after the series is written (found through /instances by its originalStart;
one already gone counts as done). On a read, a series master's deleted
occurrences come back as EXDATE lines: Graph lists them in
`cancelledOccurrences` ("OID.{seriesMasterId}.{yyyy-mm-dd}", the occurrence's
date in the series' own zone), which it returns only on a GET of the master
that names it in `$select` (EVENT_SELECT), so every read of one event uses it
and a write that answers a series master is read back that way. A timed
series gets that date at its own wall-clock start time (in the event's zone,
so the EXDATE is right across a DST change), an all-day series the date.
Leaving an EXDATE out of a later write does not bring a deleted occurrence back
(Graph cannot restore one); the answer shows what Graph keeps.

Sync: `/me/calendars/{id}/calendarView/delta` over a window around now
(Graph's delta for events works on a calendar view): the first round returns
every instance (singles, occurrences, exceptions) and a deltaLink, later
rounds only changes (`@removed` for deleted ones). A series master is not part
of a calendar view, so it is read (GET /me/events/{seriesMasterId}) whenever a
round shows one of its occurrences new, changed or removed (a deleted
occurrence changes only the master's cancelledOccurrences); a master that is
gone by then was deleted with its series. An expired delta token is 410 Gone
(syncStateNotFound): SyncTokenExpired, the caller starts over.
"""

import datetime as dt
import functools
import logging

import httpx
from django.conf import settings

from integrations import gateway, oauth
from integrations.errors import DomainError, PermanentError
from integrations.providers import HttpxAdapter, graph_base
from integrations.webhooks.graph import subscription_body

from ..providers.freebusy import graph_translate
from . import recurrence, times
from .types import CalendarData, EventData, SyncResult

logger = logging.getLogger(__name__)

PROVIDER = "microsoft_calendar"
# What a GET of one event asks for. `$select` is the only way to get cancelledOccurrences, and Graph then
# answers only what is named, so this names everything event_data reads (and what staff see in `raw`).
EVENT_SELECT = ",".join(
    (
        "id",
        "type",
        "subject",
        "body",
        "location",
        "start",
        "end",
        "isAllDay",
        "isCancelled",
        "originalStart",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "seriesMasterId",
        "recurrence",
        "cancelledOccurrences",
        "attendees",
        "organizer",
        "isReminderOn",
        "reminderMinutesBeforeStart",
        "sensitivity",
        "showAs",
        "isOnlineMeeting",
        "onlineMeeting",
        "iCalUId",
        "changeKey",
        "webLink",
        "lastModifiedDateTime",
    )
)
RESPONSES = {
    "none": "needsAction",
    "notResponded": "needsAction",
    "organizer": "accepted",
    "accepted": "accepted",
    "tentativelyAccepted": "tentative",
    "declined": "declined",
}
SENSITIVITY = {"normal": "default", "personal": "private", "private": "private", "confidential": "confidential"}
VISIBILITY = {"default": "normal", "public": "normal", "private": "private", "confidential": "confidential"}


class SyncTokenExpired(Exception):
    """Graph answered 410 Gone to a delta link: start over without one."""


class GraphCalendarAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Microsoft Graph"


GRAPH = GraphCalendarAdapter()


def base():
    return graph_base()


@functools.cache
def _client():
    return httpx.Client(headers={"Accept": "application/json", "User-Agent": "integration-hub"}, trust_env=False)


def _call(conn, operation, method, url, **kwargs):
    oauth.access_token(connection=conn)  # a refresh, if due, is its own call (on microsoft_oauth)
    if not url.startswith("https://") and not url.startswith("http://"):
        url = base() + url
    elif not url.startswith(base() + "/"):
        raise PermanentError(PROVIDER, "Graph gave a link outside GRAPH_API_BASE; not followed with the user's token")
    with GRAPH.attempt(operation, owner=conn.owner_id, scope=f"mailbox:{conn.pk}") as att:
        response = _client().request(
            method, url, auth=oauth.bearer_auth(connection=conn), timeout=gateway.timeout_for(PROVIDER), **kwargs
        )
        att.record(
            http_status=response.status_code, request_id=response.headers.get("request-id"), units={"requests": 1}
        )
        if response.status_code >= 400:
            raise graph_translate(response)
    return response.json() if response.content else {}


def _gone(exc):
    return isinstance(exc, PermanentError) and exc.http_status in (404, 410)


# --- Shapes ------------------------------------------------------------------------------------


def _reminders(item):
    if not item.get("isReminderOn"):
        return {"use_default": False, "overrides": []}
    return {
        "use_default": False,
        "overrides": [{"method": "popup", "minutes": int(item.get("reminderMinutesBeforeStart") or 0)}],
    }


def event_data(item, *, calendar_zone="UTC"):
    if "@removed" in item:
        return EventData(external_id=item["id"], status="cancelled", raw=item)
    start, end = item.get("start") or {}, item.get("end") or {}
    tz_name = times.from_provider_zone(
        item.get("originalStartTimeZone") or start.get("timeZone"), default=calendar_zone
    )
    all_day = bool(item.get("isAllDay"))
    data = EventData(
        external_id=item["id"],
        status="cancelled" if item.get("isCancelled") else "confirmed",
        etag=item.get("@odata.etag") or item.get("changeKey") or "",
        ical_uid=item.get("iCalUId") or "",
        title=item.get("subject") or "",
        description=(item.get("body") or {}).get("content") or "",
        location=(item.get("location") or {}).get("displayName") or "",
        all_day=all_day,
        time_zone=tz_name,
        attendees=[
            {
                "email": (a.get("emailAddress") or {}).get("address", ""),
                "name": (a.get("emailAddress") or {}).get("name", ""),
                "response_status": RESPONSES.get((a.get("status") or {}).get("response", "none"), "needsAction"),
                "optional": a.get("type") == "optional",
                "organizer": (a.get("status") or {}).get("response") == "organizer",
            }
            for a in item.get("attendees") or []
        ],
        reminders=_reminders(item),
        visibility=SENSITIVITY.get(item.get("sensitivity") or "normal", "default"),
        recurring_event_id=item.get("seriesMasterId") or "",
        original_start=_original_start(item, tz_name, all_day),
        html_link=item.get("webLink") or "",
        provider_updated_at=times.parse_instant(item["lastModifiedDateTime"])
        if item.get("lastModifiedDateTime")
        else None,
        raw=item,
    )
    if start.get("dateTime"):
        if all_day:
            data.start_date = dt.date.fromisoformat(start["dateTime"][:10])
            data.end_date = dt.date.fromisoformat(end["dateTime"][:10])
        else:
            data.start = times.parse_instant(
                start["dateTime"], times.from_provider_zone(start.get("timeZone"), tz_name)
            )
            data.end = times.parse_instant(end["dateTime"], times.from_provider_zone(end.get("timeZone"), tz_name))
    if item.get("recurrence"):
        parts = recurrence.from_graph(item["recurrence"], tz_name=tz_name, all_day=all_day)
        data.recurrence = [recurrence.format_rule(parts), *_cancelled_exdates(item, data)]
    return data


def _original_start(item, tz_name, all_day):
    """The occurrence's planned start (UTC). For an all-day series the hub keeps the planned date at 00:00 UTC
    (Google's form): Graph's instant is read as that date whether it is the local midnight or the UTC one."""
    if not item.get("originalStart"):
        return None
    moment = times.parse_instant(item["originalStart"])
    if not all_day:
        return moment
    local = times.wall(moment, tz_name)
    day = local.date() if local.time().replace(tzinfo=None) == dt.time(0, 0) else moment.date()
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)


def _cancelled_exdates(item, data):
    """EXDATE lines for a series master's cancelledOccurrences ("OID.{seriesMasterId}.{yyyy-mm-dd}").

    The date is the occurrence's day in the series' zone: an all-day series excludes that date, a timed one
    that day at the series' own wall-clock start (so 09:00 New York is 13:00 or 14:00 UTC, as DST has it).
    """
    days = []
    for oid in item.get("cancelledOccurrences") or []:
        try:
            days.append(dt.date.fromisoformat(str(oid).rsplit(".", 1)[1]))
        except (IndexError, ValueError):
            logger.warning("unreadable cancelledOccurrences entry left out", extra={"event": item.get("id")})
    if not days:
        return []
    if data.all_day:
        return recurrence.exdate_line(days, data.time_zone)
    if data.start is None:
        return []
    zone, local = times.zone(data.time_zone), times.wall(data.start, data.time_zone)
    moments = [dt.datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=zone) for day in days]
    return recurrence.exdate_line([m.astimezone(dt.UTC) for m in moments], data.time_zone)


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


# --- Calls ---------------------------------------------------------------------------------------


def _pages(conn, operation, url, **kwargs):
    while url:
        page = _call(conn, operation, "GET", url, **kwargs)
        kwargs = {}
        yield page
        url = page.get("@odata.nextLink")


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


def event_insert(conn, calendar, write, *, notify=True):
    body, exdates = event_body(write)
    created = _call(conn, "event.create", "POST", f"/me/calendars/{calendar.external_id}/events", json=body)
    if exdates:
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


def events_sync(conn, calendar, *, sync_token=""):
    """Changes since the delta link (every instance in the window without one); SyncTokenExpired on 410."""
    if sync_token:
        url, kwargs = sync_token, {}
    else:
        now = dt.datetime.now(dt.UTC)
        url = f"/me/calendars/{calendar.external_id}/calendarView/delta"
        kwargs = {
            "params": {
                "startDateTime": times.rfc3339(now - dt.timedelta(days=settings.CALENDAR_GRAPH_WINDOW_DAYS_BACK)),
                "endDateTime": times.rfc3339(now + dt.timedelta(days=settings.CALENDAR_GRAPH_WINDOW_DAYS_AHEAD)),
            }
        }
    events, removed, cursor, masters = [], [], "", set()
    window = None
    if not sync_token:
        params = kwargs["params"]
        window = (times.parse_instant(params["startDateTime"]), times.parse_instant(params["endDateTime"]))
    try:
        for page in _pages(conn, "events.delta", url, **kwargs):
            for item in page.get("value") or []:
                data = event_data(item, calendar_zone=calendar.time_zone)
                if "@removed" in item:
                    removed.append(data.external_id)
                    continue
                events.append(data)
                if data.recurring_event_id:
                    masters.add(data.recurring_event_id)
            cursor = page.get("@odata.deltaLink") or cursor
    except PermanentError as exc:
        if sync_token and exc.http_status == 410:
            raise SyncTokenExpired from exc
        raise
    from ..models import CalendarEvent

    # A removed occurrence of a series is a new entry in its master's cancelledOccurrences (an EXDATE).
    masters |= set(
        CalendarEvent.objects.filter(calendar=calendar, external_id__in=removed)
        .exclude(recurring_event_id="")
        .values_list("recurring_event_id", flat=True)
    )
    for master_id in sorted(masters - {e.external_id for e in events}):
        try:
            events.insert(0, event_get(conn, calendar, master_id))
        except PermanentError as exc:
            if not _gone(exc):
                raise
            removed.append(master_id)  # the whole series was deleted: its row goes with its occurrences
    return SyncResult(events=events, removed=removed, cursor=cursor, full=not sync_token, window=window)


def subscribe(conn, calendar, *, notification_url, client_state, expires_at):
    body = subscription_body(
        resource=f"/me/calendars/{calendar.external_id}/events",
        notification_url=notification_url,
        client_state=client_state,
        expires_at=expires_at,
    )
    answer = _call(conn, "subscription.create", "POST", "/subscriptions", json=body)
    return answer["id"], times.parse_instant(answer["expirationDateTime"])


def subscription_renew(conn, subscription_id, *, expires_at):
    """The new expiry, or None when Graph no longer has the subscription (create a new one)."""
    try:
        answer = _call(
            conn,
            "subscription.renew",
            "PATCH",
            f"/subscriptions/{subscription_id}",
            json={"expirationDateTime": expires_at.isoformat()},
        )
    except PermanentError as exc:
        if _gone(exc):
            return None
        raise
    return times.parse_instant(answer["expirationDateTime"])


def subscription_delete(conn, subscription_id):
    try:
        _call(conn, "subscription.delete", "DELETE", f"/subscriptions/{subscription_id}")
    except PermanentError as exc:
        if not _gone(exc):
            raise
