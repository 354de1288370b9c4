"""Free/busy from Google Calendar (`freebusy.query`) and Microsoft Graph (`getSchedule`): the only module that asks.

Both are read in one request per connection (Google: every calendar of the
connection in one query, 50 at most per request; Graph: the mailbox's
schedule), never by listing events. Each request is one gateway attempt
(`gateway.aattempt`: configured check, the connection's limiter scope, the
breaker, one ProviderCall row) and answers `Busy`: UTC intervals, merged.

Why async: availability asks every participant's connections at once, and the
request's thread must stay the one that touches the database (call-log rows go
back to it through `aio.db_hop`), so HTTP runs on an event loop — Graph on
httpx.AsyncClient, Google's SDK (httplib2, blocking) on a small bounded thread
pool that never touches the database. The access token is fetched (and
refreshed if due) before the loop starts, in the request's thread: that is why
Graph gets a plain Authorization header here instead of
`oauth.bearer_auth`, whose per-request lookup is synchronous database work.
A 401 to that token (revoked before its expiry) is still refreshed once and
the question asked once more, as bearer_auth and the hub's Google credentials
do: the caller's `on_refused` hops to a thread that may use the database
(`aio.db_hop`) for the new token. For Google that happens here, on the event
loop, not inside the SDK: google-auth-httplib2 refreshes on the pool's thread,
where the hub's credentials may not reach the database and refresh nothing.

Errors: 429 (and Google's 403 rateLimitExceeded / userRateLimitExceeded) are
ProviderRateLimited with Retry-After; 5xx retryable; other 4xx permanent. A
calendar Google reports as notFound (deleted since it was listed) is left out
and named in `Busy.skipped`; any other per-calendar error fails the connection,
because slots computed without someone's calendar would be wrong.
"""

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import google_auth_httplib2
import httpx
from django.conf import settings
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from integrations import egress, gateway, google_http
from integrations.errors import GOOGLE_RATE_REASONS, PermanentError, QuotaExceeded, error_from_http, google_reason

GOOGLE = "google_calendar"
GRAPH = "microsoft_calendar"
GOOGLE_MAX_CALENDARS = 50  # freebusy.query's calendarExpansionMax
GOOGLE_QUOTA_REASONS = {"dailyLimitExceeded", "quotaExceeded"}
# getSchedule statuses that block a slot. Tentative blocks too: the person said they might be there.
GRAPH_BUSY = {"busy", "tentative", "oof"}
# availabilityView digits: 0 free, 1 tentative, 2 busy, 3 oof, 4 working elsewhere.
GRAPH_VIEW_BUSY = {"1", "2", "3"}
GRAPH_VIEW_INTERVAL = 15


@dataclass
class Busy:
    """One connection's busy time in the window: merged UTC intervals, and what its provider said besides."""

    intervals: list  # [(start, end)] aware UTC datetimes, sorted, disjoint
    skipped: list = field(default_factory=list)  # calendar ids the provider no longer knows
    # Graph's working hours for the mailbox (the user's own setting at Microsoft), or None.
    working_hours: dict | None = None


def merge(intervals):
    """Sorted, disjoint intervals covering the same time (touching ones joined)."""
    out = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _utc(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _rfc3339(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Google -------------------------------------------------------------------------


def google_base():
    return (settings.GOOGLE_CALENDAR_API_BASE or "").rstrip("/")


@functools.cache
def _google_service(base):
    # Built once per process from the bundled discovery document; each request brings its own authorized http.
    options = {"api_endpoint": base + "/"} if base else None
    return build("calendar", "v3", http=google_http.http(), client_options=options, static_discovery=True)


_pool_lock = threading.Lock()
_pools = {}


def _pool():
    """The bounded thread pool that runs Google's blocking SDK calls (no database work ever runs there)."""
    size = settings.AVAILABILITY_CONCURRENCY
    with _pool_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="freebusy")
        return pool


def google_translate(resp, content):
    status = int(resp.status)
    reason, message = google_reason(content)
    if reason in GOOGLE_QUOTA_REASONS:
        return QuotaExceeded(GOOGLE, message or reason, code=reason, http_status=status)
    if status == 403 and reason in GOOGLE_RATE_REASONS:
        status = 429  # Calendar says 403 for per-user rate limits: a 429 to us
    return error_from_http(GOOGLE, status, headers=dict(resp), code=reason or None, message=message)


def _google_execute(request, credentials, timeout):
    # No refresh inside the SDK: on this pool it could only send the refused token again (twice, its default);
    # google_busy refreshes on the event loop instead.
    http = google_auth_httplib2.AuthorizedHttp(
        credentials, http=google_http.http(timeout=timeout), refresh_status_codes=()
    )
    try:
        return request.execute(http=http, num_retries=0)
    except HttpError as exc:
        raise google_translate(exc.resp, exc.content) from exc
    finally:
        http.close()  # one connection per question: nothing to keep alive for


async def google_busy(*, connection, credentials, calendar_ids, start, end, deadline=None, on_refused=None):
    """Busy time of these calendars of one Google connection: one freebusy.query per 50 calendars.

    `on_refused(token)` (awaited) answers a new token when Google answers 401 to the credentials' token; the
    query goes once more with it, and a 401 to the new token is Google's answer (one refresh per question, not
    a loop). Without it, every availability question that asked this connection failed until the stored expiry
    passed."""
    service = _google_service(google_base())
    loop = asyncio.get_running_loop()
    intervals, skipped = [], []
    renewed = False

    def ask(request):
        return loop.run_in_executor(_pool(), _google_execute, request, credentials, gateway.timeout_for(GOOGLE))

    for first in range(0, len(calendar_ids), GOOGLE_MAX_CALENDARS):
        chunk = calendar_ids[first : first + GOOGLE_MAX_CALENDARS]
        body = {
            "timeMin": _rfc3339(start),
            "timeMax": _rfc3339(end),
            "timeZone": "UTC",
            "items": [{"id": c} for c in chunk],
        }
        request = service.freebusy().query(body=body)
        async with gateway.aattempt(
            GOOGLE, "freebusy.query", owner=connection.owner_id, scope=f"user:{connection.pk}", deadline=deadline
        ) as att:
            try:
                answer = await ask(request)
            except PermanentError as exc:
                if exc.http_status != 401 or on_refused is None or renewed:
                    raise
                renewed = True
                credentials.token = await on_refused(credentials.token)
                answer = await ask(request)
            att.record(http_status=200, units={"requests": 1, "calendars": len(chunk)})
            calendars = answer.get("calendars") or {}
            for calendar_id in chunk:
                entry = calendars.get(calendar_id)
                if entry is None:
                    raise PermanentError(GOOGLE, f"freebusy.query did not answer for calendar {calendar_id!r}")
                errors = entry.get("errors") or []
                reasons = {e.get("reason", "") for e in errors}
                if reasons == {"notFound"}:
                    skipped.append(calendar_id)
                    continue
                if errors:
                    reason = sorted(reasons)[0] or "unknown"
                    # A per-calendar backend error is transient at Google; anything else is not ours to retry.
                    cls = error_from_http(GOOGLE, 503 if reason == "backendError" else 400, code=reason)
                    cls.message = f"freebusy.query failed for a calendar ({reason})"
                    raise cls
                intervals.extend((_utc(b["start"]), _utc(b["end"])) for b in entry.get("busy") or [])
    return Busy(intervals=merge(intervals), skipped=skipped)


# --- Microsoft Graph ----------------------------------------------------------------


def graph_base():
    return (settings.GRAPH_API_BASE or "https://graph.microsoft.com/v1.0").rstrip("/")


def _graph_time(value):
    """A Graph dateTimeTimeZone as an aware UTC datetime (Graph gives 7 fractional digits; Python takes 6)."""
    text = value["dateTime"]
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_graph_zone(value.get("timeZone") or "UTC"))
    return moment.astimezone(UTC)


def _graph_zone(name):
    from .windows_zones import iana_zone

    zone = iana_zone(name)
    if zone is None:
        raise PermanentError(GRAPH, f"getSchedule answered in a time zone the hub does not know ({name!r})")
    return zone


def graph_translate(response):
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    return error_from_http(
        GRAPH,
        response.status_code,
        headers=dict(response.headers),
        code=error.get("code"),
        message=error.get("message", ""),
        request_id=response.headers.get("request-id"),
    )


def _view_intervals(view, start, minutes):
    """Busy intervals from an availabilityView string (one digit per `minutes` from `start`)."""
    out = []
    for n, digit in enumerate(view):
        if digit in GRAPH_VIEW_BUSY:
            slot = start + timedelta(minutes=n * minutes)
            out.append((slot, slot + timedelta(minutes=minutes)))
    return out


def _working_hours(info):
    hours = info.get("workingHours")
    if not hours:
        return None
    name = (hours.get("timeZone") or {}).get("name") or ""
    from .windows_zones import iana_zone

    zone = iana_zone(name)
    if zone is None:
        return None  # a custom zone: the request's or the default hours apply instead
    days = {"monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6, "sunday": 7}
    return {
        "time_zone": zone.key,
        "days": sorted(days[d.lower()] for d in hours.get("daysOfWeek") or [] if d.lower() in days),
        "start": (hours.get("startTime") or "09:00:00")[:5],
        "end": (hours.get("endTime") or "17:00:00")[:5],
    }


async def graph_busy(*, connection, token, client, start, end, deadline=None, on_refused=None):
    """Busy time of one Microsoft connection's mailbox: one POST /me/calendar/getSchedule.

    `on_refused(token)` (awaited) answers a new token when Graph answers 401 to `token`; the request goes once
    more with it, and a second 401 is Graph's answer. Without it, every availability question that asked this
    connection was a 502 until the stored expiry passed."""
    body = {
        "schedules": [connection.account],
        "startTime": {"dateTime": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "endTime": {"dateTime": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "availabilityViewInterval": GRAPH_VIEW_INTERVAL,
    }

    def ask(token):
        return client.post(
            f"{graph_base()}/me/calendar/getSchedule",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Prefer": 'outlook.timezone="UTC"'},
            timeout=gateway.timeout_for(GRAPH),
        )

    async with gateway.aattempt(
        GRAPH, "calendar.getSchedule", owner=connection.owner_id, scope=f"mailbox:{connection.pk}", deadline=deadline
    ) as att:
        response = await ask(token)
        if response.status_code == 401 and on_refused is not None:
            response = await ask(await on_refused(token))
        att.record(
            http_status=response.status_code, request_id=response.headers.get("request-id"), units={"requests": 1}
        )
        if response.status_code >= 400:
            raise graph_translate(response)
        try:
            values = response.json().get("value") or []
        except ValueError:
            raise PermanentError(GRAPH, "getSchedule answered something that is not JSON") from None
        if not values:
            raise PermanentError(GRAPH, "getSchedule answered no schedule for the mailbox")
        info = values[0]
        if info.get("error"):
            error = info["error"]
            raise PermanentError(
                GRAPH, f"getSchedule could not read the mailbox: {error.get('message') or error.get('responseCode')}"
            )
        items = info.get("scheduleItems")
        if items is None:
            intervals = _view_intervals(info.get("availabilityView") or "", start, GRAPH_VIEW_INTERVAL)
        else:
            intervals = [
                (_graph_time(i["start"]), _graph_time(i["end"]))
                for i in items
                if str(i.get("status", "busy")).lower() in GRAPH_BUSY
            ]
    return Busy(intervals=merge(intervals), working_hours=_working_hours(info))


def graph_client():
    """One AsyncClient for all of a request's Graph calls (its own connection pool, the egress proxy for Graph's host)."""
    limits = httpx.Limits(max_connections=settings.AVAILABILITY_CONCURRENCY)
    return httpx.AsyncClient(transport=egress.async_transport(limits=limits))
