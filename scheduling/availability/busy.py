"""Each participant's calendar connections and their busy time, asked all at once and cached per connection."""

import asyncio
import hashlib
import time as clock
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache

from integrations import oauth
from integrations.aio import db_hop
from integrations.errors import DomainError, ProviderError, ProviderRateLimited, RateLimited
from integrations.models import Connection

from ..models import Calendar
from ..providers import freebusy
from ..providers.freebusy import Busy
from .slots import EPOCH, _ceil_to_grid

CALENDAR_PROVIDERS = {"google_oauth": "google", "microsoft_oauth": "microsoft"}


@dataclass
class Source:
    """One calendar connection of one participant, and the calendars of it to ask."""

    user_id: int
    connection: Connection
    kind: str  # "google" | "microsoft"
    calendar_ids: tuple


def _own_busy_time(calendar, account):
    """Whether a Google calendar's events are the account holder's own busy time (see `_calendar_ids`)."""
    raw = calendar.raw or {}
    if calendar.primary:
        return True
    if calendar.access_role != "owner" or raw.get("deleted"):
        return False
    # "owner" is also what "make changes and manage sharing" grants on someone else's calendar; Google names the
    # calendar's owner in dataOwner (secondary calendars only).
    if raw.get("dataOwner") and raw["dataOwner"].lower() != (account or "").lower():
        return False
    # calendarList leaves `selected` out when false (Google's documented default); a row with no calendarList
    # entry behind it says nothing either way and counts.
    return bool(raw.get("selected", not raw))


def _calendar_ids(conn, rows):
    """The calendars of one Google connection to ask about, from its synced Calendar rows.

    The user's own busy time: the primary calendar plus the calendars the user
    owns (calendarList accessRole "owner", and dataOwner the account itself where
    Google names one) that are selected (shown in their Google Calendar). Never a
    calendar they only read or that someone else owns: subscribed holidays, a
    colleague's calendar, a shared team calendar they may write to ("writer" is
    someone else's calendar they help keep, not their time). No rows yet (GET /api/v1/calendars/ reads them from
    Google, at most every 5 minutes): the primary calendar alone. One
    freebusy.query still asks them all at once, and the cache key holds the ids.
    """
    others = sorted(c.external_id for c in rows if not c.primary and _own_busy_time(c, conn.account))
    return ("primary", *others)


def _sources(users):
    by_user = {u.pk: [] for u in users}
    # Tokens are decrypted only for the connections the cache cannot answer for (busy_for loads them).
    conns = (
        Connection.objects.filter(owner__in=users, provider__in=list(CALENDAR_PROVIDERS))
        .defer("access_token", "refresh_token")
        .order_by("owner_id", "pk")
    )
    rows = {}
    for calendar in Calendar.objects.filter(connection__in=conns, kind=Calendar.Kind.GOOGLE).only(
        "connection_id", "external_id", "primary", "access_role", "raw"
    ):
        rows.setdefault(calendar.connection_id, []).append(calendar)
    for conn in conns:
        # Filtered here, not in SQL: JSON containment is not portable to SQLite (make run).
        if "calendar" not in (conn.capabilities or []):
            continue
        kind = CALENDAR_PROVIDERS[conn.provider]
        # Microsoft: getSchedule answers for the mailbox (see the module docstring), so its address is the one id.
        ids = _calendar_ids(conn, rows.get(conn.pk, [])) if kind == "google" else (conn.account,)
        by_user[conn.owner_id].append(Source(conn.owner_id, conn, kind, tuple(ids)))
    for user in users:
        if not by_user[user.pk]:
            raise DomainError(
                422,
                "no_calendar_connected",
                f"User {user.pk} has no Google or Microsoft calendar connected; they can connect one at "
                "POST /api/v1/connections/<google|microsoft>/start/ with the 'calendar' capability.",
                user=user.pk,
            )
    return by_user


def _unusable(source, caller, error=None):
    """409 naming the connection that cannot be read; the repair URL only for the caller's own."""
    conn = source.connection
    own = conn.owner_id == caller.pk
    if error is not None and own:
        error.extra.setdefault("user", conn.owner_id)
        return error
    needs_reauth = conn.status == Connection.Status.NEEDS_REAUTH or (
        error is not None and error.code == "connection_needs_reauth"
    )
    whose = "Your" if own else f"User {conn.owner_id}'s"
    if needs_reauth:
        detail = f"{whose} {source.kind.title()} calendar connection {conn.pk} must be authorized again"
        extra = {}
        if own:
            from integrations.oauth.services import needs_reauth_error

            extra["authorization_url"] = needs_reauth_error(conn).extra.get("authorization_url")
        return DomainError(
            409,
            "connection_needs_reauth",
            detail + ("; open authorization_url." if own else "; ask them to reconnect it."),
            connection=conn.pk,
            user=conn.owner_id,
            **extra,
        )
    return DomainError(
        409,
        "connection_inactive",
        f"{whose} {source.kind.title()} calendar connection {conn.pk} is {conn.status}; it must be connected again.",
        connection=conn.pk,
        user=conn.owner_id,
    )


def _fetch_window(start, end):
    """The window rounded out to whole hours, so repeated questions share cached answers."""
    hour = timedelta(hours=1)
    first = EPOCH + ((start - EPOCH) // hour) * hour
    return first, _ceil_to_grid(end, hour)


def _version_key(connection_id):
    return f"availability:busy-version:{connection_id}"


def _cache_key(source, version, start, end):
    calendars = hashlib.sha256("\0".join(source.calendar_ids).encode()).hexdigest()[:16]
    return f"availability:busy:{source.connection.pk}:{version}:{calendars}:{int(start.timestamp())}:{int(end.timestamp())}"


def busy_cache_invalidate(connection_id):
    """Forget cached free/busy of this connection (a calendar push said something changed)."""
    cache.set(_version_key(connection_id), clock.time_ns(), timeout=None)


def _pack(busy):
    return {
        "i": [(s.timestamp(), e.timestamp()) for s, e in busy.intervals],
        "s": list(busy.skipped),
        "w": busy.working_hours,
    }


def _unpack(value):
    return Busy(
        intervals=[(datetime.fromtimestamp(s, UTC), datetime.fromtimestamp(e, UTC)) for s, e in value["i"]],
        skipped=list(value["s"]),
        working_hours=value["w"],
    )


def _prepare(source, caller):
    """Credentials for one connection, in the request's thread (a refresh, if due, happens here)."""
    conn = source.connection
    if conn.status != Connection.Status.ACTIVE:
        raise _unusable(source, caller)
    try:
        if source.kind == "google":
            return oauth.google_credentials(connection=conn)
        return oauth.access_token(connection=conn)
    except DomainError as exc:
        raise _refresh_refused(source, caller, exc) from exc


def _refresh_refused(source, caller, error):
    """A refresh's DomainError as the caller may see it: a refused grant (409) names the connection, and carries
    the repair URL only for the caller's own (see `_unusable`)."""
    if error.status != 409:
        return error
    source.connection.refresh_from_db(fields=["status", "status_detail"])
    return _unusable(source, caller, error)


def _on_refused(connection):
    """Google or Graph answered 401 to the connection's token: the new token, refreshed in a thread that may use
    the database (the event loop's thread may not, nor the pool that runs Google's SDK)."""
    from integrations.oauth.services import access_token_refused

    async def refreshed(token):
        return await db_hop(access_token_refused, connection=connection, token=token)

    return refreshed


def _worst(errors):
    """The error to answer with when some connections failed: a rate limit (the longest wait) first."""
    limited = [e for e in errors if isinstance(e, ProviderRateLimited | RateLimited)]
    if limited:
        return max(limited, key=lambda e: e.retry_after or 0)
    return errors[0]


def _fetch(jobs, start, end, caller):
    """[(source, credentials)] -> [Busy], all at once on one event loop; the database stays in this thread
    (a token Google or Graph refuses meanwhile is refreshed in a db_hop)."""
    deadline = clock.monotonic() + settings.AVAILABILITY_RATE_WAIT_SECONDS

    async def run():
        limit = asyncio.Semaphore(settings.AVAILABILITY_CONCURRENCY)
        async with freebusy.graph_client() as client:

            async def one(source, credentials):
                async with limit:
                    if source.kind == "google":
                        return await freebusy.google_busy(
                            connection=source.connection,
                            credentials=credentials,
                            calendar_ids=list(source.calendar_ids),
                            start=start,
                            end=end,
                            deadline=deadline,
                            on_refused=_on_refused(source.connection),
                        )
                    return await freebusy.graph_busy(
                        connection=source.connection,
                        token=credentials,
                        client=client,
                        start=start,
                        end=end,
                        deadline=deadline,
                        on_refused=_on_refused(source.connection),
                    )

            return await asyncio.gather(*(one(s, c) for s, c in jobs), return_exceptions=True)

    results = async_to_sync(run)()
    errors = [(s, r) for (s, _), r in zip(jobs, results, strict=True) if isinstance(r, BaseException)]
    if errors:
        for _, error in errors:
            if not isinstance(error, ProviderError | DomainError):
                raise error  # a bug, not a provider's answer
        raise _worst([_refresh_refused(s, caller, e) if isinstance(e, DomainError) else e for s, e in errors])
    return results


def busy_for(sources, *, caller, start, end):
    """{connection id: Busy} for these sources over [start, end), from the cache where it is fresh."""
    fetch_start, fetch_end = _fetch_window(start, end)
    versions = cache.get_many([_version_key(s.connection.pk) for s in sources])
    keys = {
        s.connection.pk: _cache_key(s, versions.get(_version_key(s.connection.pk), 0), fetch_start, fetch_end)
        for s in sources
    }
    cached = cache.get_many(list(keys.values()))
    found, todo = {}, []
    for source in sources:
        hit = cached.get(keys[source.connection.pk])
        if hit is not None:
            found[source.connection.pk] = _unpack(hit)
        else:
            todo.append(source)
    if todo:
        with_tokens = Connection.objects.in_bulk([s.connection.pk for s in todo])
        for source in todo:
            source.connection = with_tokens.get(source.connection.pk, source.connection)
    jobs = [(source, _prepare(source, caller)) for source in todo]
    if jobs:
        fresh = _fetch(jobs, fetch_start, fetch_end, caller)
        cache.set_many(
            {keys[s.connection.pk]: _pack(b) for (s, _), b in zip(jobs, fresh, strict=True)},
            timeout=settings.AVAILABILITY_CACHE_SECONDS,
        )
        found.update({s.connection.pk: b for (s, _), b in zip(jobs, fresh, strict=True)})
    return found, len(sources) - len(todo)
