"""Google Calendar over google-api-python-client: the only module that speaks Calendar for calendars.

Same construction as Meet's (scheduling/providers/google_meet.py): services from
the library's bundled discovery document over google-auth-httplib2 with the
connection's fresh token, `execute(num_retries=0)` inside one gateway attempt
per request (provider `google_calendar`, the connection's limiter scope), and
Google's errors translated once (freebusy.google_translate: 403
rateLimitExceeded is a 429, quota reasons are permanent).

Sync: `events.list` with the stored `syncToken` returns what changed since
(deleted events as `status: cancelled`, `showDeleted` implied); a 410 Gone
means the token expired and the caller starts a full sync. Push:
`events.watch` opens a web_hook channel with our channel id and token;
`channels.stop` closes it.
"""

import datetime as dt

import google_auth_httplib2
import httplib2
from django.conf import settings
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from integrations import gateway, google_http, oauth
from integrations.errors import PermanentError, ProviderTimeout, ProviderUnavailable
from integrations.providers import ProviderAdapter

from ..providers.freebusy import google_translate
from . import times
from .create_id import create_id
from .types import CalendarData, EventData, SyncResult

PROVIDER = "google_calendar"
PAGE_SIZE = 250
CHANNEL_DEFAULT_TTL_SECONDS = 7 * 24 * 3600  # events.watch params.ttl: "The default is 604800 seconds."


class SyncTokenExpired(Exception):
    """Google answered 410 Gone to a syncToken: wipe the cursor and sync in full."""


class GoogleCalendarAdapter(ProviderAdapter):
    provider = PROVIDER
    sdk_errors = (HttpError, httplib2.HttpLib2Error, TimeoutError, OSError)

    def translate(self, exc):
        if isinstance(exc, HttpError):
            return google_translate(exc.resp, exc.content)
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(PROVIDER, "Google Calendar did not answer in time")
        return ProviderUnavailable(PROVIDER, f"connection to Google Calendar failed ({type(exc).__name__})")


GOOGLE = GoogleCalendarAdapter()


def service(conn):
    creds = oauth.google_credentials(connection=conn)
    # A write goes out once (google_http.OneSendHttp): httplib2 would resend an insert whose answer was lost.
    http = google_auth_httplib2.AuthorizedHttp(creds, http=google_http.http(timeout=gateway.timeout_for(PROVIDER)))
    base = (settings.GOOGLE_CALENDAR_API_BASE or "").rstrip("/")
    options = {"api_endpoint": base + "/"} if base else None
    return build("calendar", "v3", http=http, client_options=options, static_discovery=True, cache_discovery=False)


def _execute(conn, operation, request):
    with GOOGLE.attempt(operation, owner=conn.owner_id, scope=f"user:{conn.pk}") as att:
        result = request.execute(num_retries=0)
        att.record(http_status=200, units={"requests": 1})
    return result


def _gone(exc):
    return isinstance(exc, PermanentError) and exc.http_status in (404, 410)


# --- Shapes -------------------------------------------------------------------------------


def _when(value, tz_name):
    """(instant or None, date or None) of a Google start/end/originalStartTime."""
    if not value:
        return None, None
    if value.get("date"):
        return None, dt.date.fromisoformat(value["date"])
    return times.parse_instant(value["dateTime"], value.get("timeZone") or tz_name), None


def event_data(item, *, calendar_zone="UTC"):
    start = item.get("start") or {}
    tz_name = times.from_provider_zone(start.get("timeZone"), default=calendar_zone)
    start_at, start_date = _when(start, tz_name)
    end_at, end_date = _when(item.get("end"), tz_name)
    original_at, original_date = _when(item.get("originalStartTime"), tz_name)
    if original_date is not None:
        original_at = dt.datetime.combine(original_date, dt.time(0, 0), tzinfo=dt.UTC)
    reminders = item.get("reminders") or {}
    return EventData(
        external_id=item["id"],
        status=item.get("status") or "confirmed",
        etag=item.get("etag") or "",
        ical_uid=item.get("iCalUID") or "",
        title=item.get("summary") or "",
        description=item.get("description") or "",
        location=item.get("location") or "",
        all_day=start_date is not None,
        start=start_at,
        end=end_at,
        start_date=start_date,
        end_date=end_date,
        time_zone=tz_name,
        attendees=[
            {
                "email": a.get("email", ""),
                "name": a.get("displayName", ""),
                "response_status": a.get("responseStatus", "needsAction"),
                "optional": bool(a.get("optional")),
                "organizer": bool(a.get("organizer")),
            }
            for a in item.get("attendees") or []
        ],
        reminders={
            "use_default": bool(reminders.get("useDefault", True)),
            "overrides": [
                {"method": r.get("method", "popup"), "minutes": int(r.get("minutes", 0))}
                for r in reminders.get("overrides") or []
            ],
        }
        if reminders
        else {},
        visibility=item.get("visibility") or "default",
        recurrence=list(item.get("recurrence") or []),
        recurring_event_id=item.get("recurringEventId") or "",
        original_start=original_at,
        html_link=item.get("htmlLink") or "",
        provider_updated_at=times.parse_instant(item["updated"]) if item.get("updated") else None,
        raw=item,
    )


def event_body(write):
    body = {}
    if write.title is not None:
        body["summary"] = write.title
    if write.description is not None:
        body["description"] = write.description
    if write.location is not None:
        body["location"] = write.location
    if write.moves:
        if write.all_day:
            body["start"] = {"date": write.start_date.isoformat(), "timeZone": write.time_zone}
            body["end"] = {"date": write.end_date.isoformat(), "timeZone": write.time_zone}
        else:
            # Wall-clock in the event's zone with its offset: Google expands a recurrence from that wall clock.
            for key, moment in (("start", write.start), ("end", write.end)):
                local = times.wall(moment, write.time_zone)
                body[key] = {"dateTime": local.isoformat(), "timeZone": write.time_zone}
    if write.attendees is not None:
        body["attendees"] = [
            {
                "email": a["email"],
                **({"displayName": a["name"]} if a.get("name") else {}),
                **({"optional": True} if a.get("optional") else {}),
            }
            for a in write.attendees
        ]
    if write.reminders is not None:
        body["reminders"] = {
            "useDefault": write.reminders.get("use_default", True),
            **(
                {"overrides": [{"method": r["method"], "minutes": r["minutes"]} for r in write.reminders["overrides"]]}
                if write.reminders.get("overrides")
                else {}
            ),
        }
    if write.visibility is not None:
        body["visibility"] = write.visibility
    if write.recurrence is not None:
        body["recurrence"] = write.recurrence
    return body


# --- Calls -------------------------------------------------------------------------------------


def calendars_list(conn):
    api, out, token = service(conn), [], None
    while True:
        page = _execute(conn, "calendarList.list", api.calendarList().list(pageToken=token, maxResults=PAGE_SIZE))
        for item in page.get("items") or []:
            out.append(
                CalendarData(
                    external_id=item["id"],
                    name=item.get("summaryOverride") or item.get("summary") or item["id"],
                    primary=bool(item.get("primary")),
                    time_zone=times.from_provider_zone(item.get("timeZone")),
                    access_role=item.get("accessRole") or "",
                    raw=item,
                )
            )
        token = page.get("nextPageToken")
        if not token:
            return out


def event_insert(conn, calendar, write, *, notify=True, idempotency_key=""):
    body = event_body(write)
    if idempotency_key:
        body["id"] = create_id(conn, calendar.external_id, idempotency_key, body)
    request = (
        service(conn)
        .events()
        .insert(calendarId=calendar.external_id, body=body, sendUpdates="all" if notify else "none")
    )
    try:
        created = _execute(conn, "event.insert", request)
    except PermanentError as exc:
        if not (idempotency_key and exc.http_status == 409):
            raise
        # The id is taken: an earlier attempt of this same create reached Google and its answer was lost. That
        # event is this create's result (cancelled if someone deleted it since: the service says so).
        return event_get(conn, calendar, body["id"])
    return event_data(created, calendar_zone=calendar.time_zone)


def event_patch(conn, calendar, event_id, write, *, notify=True):
    body = event_body(write)
    if write.moves:
        # A patch merges into start/end: a move between timed and all-day must clear the other key (null).
        other = "dateTime" if write.all_day else "date"
        body["start"][other] = body["end"][other] = None
    request = (
        service(conn)
        .events()
        .patch(
            calendarId=calendar.external_id,
            eventId=event_id,
            body=body,
            sendUpdates="all" if notify else "none",
        )
    )
    return event_data(_execute(conn, "event.patch", request), calendar_zone=calendar.time_zone)


def event_get(conn, calendar, event_id):
    request = service(conn).events().get(calendarId=calendar.external_id, eventId=event_id)
    return event_data(_execute(conn, "event.get", request), calendar_zone=calendar.time_zone)


def event_delete(conn, calendar, event_id, *, notify=True):
    """Delete (an occurrence's id cancels that occurrence). Gone already (404/410) counts as done."""
    request = (
        service(conn)
        .events()
        .delete(calendarId=calendar.external_id, eventId=event_id, sendUpdates="all" if notify else "none")
    )
    try:
        _execute(conn, "event.delete", request)
    except PermanentError as exc:
        if _gone(exc):
            return False
        raise
    return True


def is_exception(row):
    """Whether the occurrence row is an event of its own at Google (an exception), which need not end with its
    series. Google lists an occurrence apart from its series only once it was changed or cancelled: every such
    row is one."""
    return bool(row.recurring_event_id)


def instance_at(conn, calendar, series_id, original_start):
    """The occurrence of a series that was planned for `original_start` (documented events.instances filter)."""
    value = (
        original_start.isoformat()
        if isinstance(original_start, dt.date) and not isinstance(original_start, dt.datetime)
        else times.rfc3339(original_start)
    )
    request = (
        service(conn)
        .events()
        .instances(calendarId=calendar.external_id, eventId=series_id, originalStart=value, showDeleted=True)
    )
    items = _execute(conn, "event.instances", request).get("items") or []
    return event_data(items[0], calendar_zone=calendar.time_zone) if items else None


def events_sync(conn, calendar, *, sync_token=""):
    """Every change since `sync_token` (every event when empty), all pages; SyncTokenExpired on 410 Gone."""
    api, events, page_token = service(conn), [], None
    while True:
        kwargs = {"calendarId": calendar.external_id, "maxResults": PAGE_SIZE, "pageToken": page_token}
        if sync_token:
            kwargs["syncToken"] = sync_token
        else:
            kwargs["showDeleted"] = False  # a full sync needs only what exists
        try:
            page = _execute(conn, "events.list", api.events().list(**kwargs))
        except PermanentError as exc:
            if sync_token and exc.http_status == 410:
                raise SyncTokenExpired from exc
            raise
        events += [event_data(item, calendar_zone=calendar.time_zone) for item in page.get("items") or []]
        page_token = page.get("nextPageToken")
        if not page_token:
            return SyncResult(events=events, removed=[], cursor=page.get("nextSyncToken") or "", full=not sync_token)


def watch(conn, calendar, *, channel_id, token, address, ttl_seconds):
    """Open a push channel on the calendar's events: (Google's resource id, expiry)."""
    body = {
        "id": channel_id,
        "type": "web_hook",
        "address": address,
        "token": token,
        "params": {"ttl": str(ttl_seconds)},
    }
    answer = _execute(conn, "events.watch", service(conn).events().watch(calendarId=calendar.external_id, body=body))
    if not answer.get("resourceId"):
        # Without it the hub can neither tell this channel's deliveries (X-Goog-Resource-ID) from forged ones nor
        # close it (channels.stop): nothing is stored, the channel lapses at Google, and push is asked for again.
        raise PermanentError(PROVIDER, "events.watch answered a channel without its resourceId")
    expires = answer.get("expiration")
    if expires:
        when = dt.datetime.fromtimestamp(int(expires) / 1000, tz=dt.UTC)
    else:
        # The answer's expiration is optional, yet every channel ends (params.ttl, documented default a week, which
        # Google may shorten): the earlier of the two is taken, so the beat renews the channel before it lapses.
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=min(ttl_seconds, CHANNEL_DEFAULT_TTL_SECONDS))
    return answer["resourceId"], when


def channel_stop(conn, *, channel_id, resource_id):
    request = service(conn).channels().stop(body={"id": channel_id, "resourceId": resource_id})
    try:
        _execute(conn, "channels.stop", request)
    except PermanentError as exc:
        if not _gone(exc):
            raise
