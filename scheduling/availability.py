"""Availability: the common free slots of several people, ranked by everyone's working hours.

    POST /api/v1/scheduling/availability/
    {"users": [{"id": 7}, {"id": 9, "working_hours": {"time_zone": "America/New_York"}}],
     "start": "2026-12-07T00:00:00Z", "end": "2026-12-12T00:00:00Z", "duration_minutes": 30}

How it works
- Each participant's busy time comes from every calendar Connection they hold
  (capability "calendar"; any number of Google and Microsoft accounts each):
  Google `freebusy.query` with the connection's own calendars in one request
  (the primary plus those the user owns and shows, `_calendar_ids`; never
  subscribed or shared ones), Graph `getSchedule` for the mailbox, never
  event-by-event scans. getSchedule answers the mailbox's free/busy, which
  Exchange keeps from the mailbox's default calendar: events on other calendars
  of that Outlook account do not make the user busy (as in Outlook's own
  Scheduling Assistant); put them in the default calendar to count.
  All connections are asked at once (bounded by AVAILABILITY_CONCURRENCY),
  each request one gateway attempt (scheduling.providers.freebusy).
- Each connection's answer is cached for AVAILABILITY_CACHE_SECONDS per
  (connection, calendars, window rounded out to the hour), so a repeated
  question is answered without asking again; `busy_cache_invalidate` drops it
  when a calendar push arrives.
- `free_slots` (pure, below) cuts the window into candidates on a grid of
  `granularity_minutes` (aligned to UTC), keeps those that overlap nobody's
  busy time, and ranks them.

Ranking (documented in the API answer too): slots that lie wholly inside the
working hours of more participants come first; among those, the higher mean
share of the slot inside each participant's working hours; then the earlier
start. `working_hours_policy` filters before ranking: "required" keeps only
slots inside everyone's working hours, "preferred" (the default) keeps slots
inside at least someone's, "any" keeps every free slot.

Working hours, per participant, first that applies: what the request says for
that user (field by field); the user's own working hours at Microsoft
(getSchedule's `workingHours`, a mailbox setting, Windows zone names mapped to
IANA); the request's `time_zone` and `working_hours`; Monday to Friday
09:00-17:00 UTC. Hours are wall-clock times in the participant's zone, so a
09:00 start stays 09:00 across a DST change; an end at or before the start
runs past midnight (start == end is around the clock).

Whom a caller may ask about: themself; any active user if the caller is staff;
otherwise active users who share a group (django.contrib.auth Group: the
hub's teams / organisations) with the caller. Anyone else answers 404
user_not_found, exactly like an id that does not exist. Only the common free
slots leave the hub: no busy interval, event, calendar id or account of
another user is ever in the answer.

Limits: a window of at most AVAILABILITY_MAX_WINDOW_DAYS days (31: Graph's
getSchedule takes less than 42), at most AVAILABILITY_MAX_USERS participants.
"""

import asyncio
import hashlib
import logging
import time as clock
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Q

from integrations import oauth
from integrations.errors import DomainError, ProviderError, ProviderRateLimited, RateLimited
from integrations.models import Connection

from .models import Calendar
from .providers import freebusy
from .providers.freebusy import Busy, merge

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GRANULARITIES = (5, 10, 15, 30, 60)
POLICIES = ("required", "preferred", "any")
DEFAULT_DAYS = (1, 2, 3, 4, 5)
DEFAULT_START, DEFAULT_END = time(9), time(17)
RANKING = (
    "Slots wholly inside the working hours of more participants come first; then a higher mean share of the "
    "slot inside each participant's working hours; then the earlier start."
)
CALENDAR_PROVIDERS = {"google_oauth": "google", "microsoft_oauth": "microsoft"}


# --- The pure part: working hours and slots ----------------------------------------------


@dataclass(frozen=True)
class WorkingHours:
    """Wall-clock hours on ISO weekdays (1 = Monday) in an IANA zone; end <= start runs past midnight."""

    time_zone: ZoneInfo
    days: frozenset = frozenset(DEFAULT_DAYS)
    start: time = DEFAULT_START
    end: time = DEFAULT_END

    def intervals(self, window_start, window_end):
        """The working intervals inside the window, in UTC, merged.

        Each local day is expanded on its own calendar date, so DST changes the
        UTC offset, never the wall-clock hours. A start that does not exist
        that day (inside a spring-forward gap) is the instant the clock jumps past it.
        """
        tz = self.time_zone
        day = window_start.astimezone(tz).date() - timedelta(days=1)
        last = window_end.astimezone(tz).date()
        out = []
        while day <= last:
            if day.isoweekday() in self.days:
                start = _instant(day, self.start, tz)
                end = _instant(day if self.end > self.start else day + timedelta(days=1), self.end, tz)
                start, end = max(start, window_start), min(end, window_end)
                if end > start:
                    out.append((start, end))
            day += timedelta(days=1)
        return merge(out)


def _instant(day, wall, tz):
    """The UTC instant of a wall-clock time on a local date; a time DST skips is the moment the clock jumps past it.

    A time that occurs twice (autumn) is its first occurrence (fold=0).
    """
    local = datetime.combine(day, wall, tzinfo=tz)
    moment = local.astimezone(UTC)
    naive = local.replace(tzinfo=None)
    if moment.astimezone(tz).replace(tzinfo=None) == naive:
        return moment
    # In a spring-forward gap: fold=1 reads it with the later offset, an instant before the jump.
    moment = min(moment, local.replace(fold=1).astimezone(UTC))
    while moment.astimezone(tz).replace(tzinfo=None) < naive:
        moment += timedelta(minutes=1)
    return moment


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    score: float  # mean share of the slot inside each participant's working hours, 0..1
    inside: int  # participants whose working hours hold the whole slot
    outside: tuple  # keys of the participants whose working hours do not hold all of it


def _ceil_to_grid(moment, step):
    steps = -(-(moment - EPOCH) // step)
    return EPOCH + steps * step


def free_slots(*, start, end, duration, busy, hours, granularity=timedelta(minutes=15), policy="preferred", limit=None):
    """The ranked free slots of length `duration` in [start, end) for every participant.

    busy: {key: [(start, end)]} aware datetimes, any order, may overlap.
    hours: {key: WorkingHours}, one per participant (participants without busy time are free).
    Candidates start on a UTC-aligned grid of `granularity`; see the module docstring for ranking and `policy`.
    """
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    blocked = merge([(max(s, start), min(e, end)) for intervals in busy.values() for s, e in intervals])
    gaps, cursor = [], start
    for s, e in blocked:
        if s > cursor:
            gaps.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end:
        gaps.append((cursor, end))

    # Integer microseconds from here on: exact comparisons, and several times faster than datetime arithmetic.
    step, length = _us(granularity), _us(duration)
    candidates = []
    for gap_start, gap_end in gaps:
        moment, last = _us(_ceil_to_grid(gap_start, granularity) - EPOCH), _us(gap_end - EPOCH) - length
        candidates.extend(range(moment, last + 1, step))
    keys = list(hours)
    covered = {}
    for k in keys:
        working = [(_us(s - EPOCH), _us(e - EPOCH)) for s, e in hours[k].intervals(start, end)]
        before_start = _worked_before(working, candidates)
        before_end = _worked_before(working, [c + length for c in candidates])
        covered[k] = [e - s for s, e in zip(before_start, before_end, strict=True)]
    slots = []
    for n, moment in enumerate(candidates):
        outside = tuple(k for k in keys if covered[k][n] < length)
        score = sum(covered[k][n] for k in keys) / (length * len(keys)) if keys else 1.0
        if policy == "any" or (policy == "preferred" and score > 0) or (policy == "required" and not outside):
            slots.append((-(len(keys) - len(outside)), -round(score, 4), moment, outside))
    slots.sort(key=lambda row: row[:3])
    if limit is not None:
        slots = slots[:limit]
    return [
        Slot(EPOCH + timedelta(microseconds=m), EPOCH + timedelta(microseconds=m + length), -score, -inside, outside)
        for inside, score, m, outside in slots
    ]


def _us(delta):
    return delta // timedelta(microseconds=1)


def _worked_before(working, points):
    """For each of the ascending `points`: working time before it (sorted disjoint `working`, all in µs)."""
    out, i, done = [], 0, 0
    for x in points:
        while i < len(working) and working[i][1] <= x:
            done += working[i][1] - working[i][0]
            i += 1
        partial = x - working[i][0] if i < len(working) and working[i][0] < x else 0
        out.append(done + partial)
    return out


# --- Who may be asked about ------------------------------------------------------


def visible_users(caller):
    """The users `caller` may ask availability for (see the module docstring)."""
    users = get_user_model().objects.filter(is_active=True)
    if caller.is_staff:
        return users
    return users.filter(Q(pk=caller.pk) | Q(groups__in=caller.groups.all())).distinct()


def _participants(caller, ids):
    found = {u.pk: u for u in visible_users(caller).filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise DomainError(
            404,
            "user_not_found",
            f"No user {missing[0]} that you may ask about: yourself, or people who share a group with you.",
            user=missing[0],
        )
    return [found[i] for i in ids]


# --- Calendars and their free/busy -------------------------------------------------------


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
        if exc.status == 409:
            conn.refresh_from_db(fields=["status", "status_detail"])
            raise _unusable(source, caller, exc) from exc
        raise


def _worst(errors):
    """The error to answer with when some connections failed: a rate limit (the longest wait) first."""
    limited = [e for e in errors if isinstance(e, ProviderRateLimited | RateLimited)]
    if limited:
        return max(limited, key=lambda e: e.retry_after or 0)
    return errors[0]


def _fetch(jobs, start, end):
    """[(source, credentials)] -> [Busy], all at once on one event loop; the database stays in this thread."""
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
                        )
                    return await freebusy.graph_busy(
                        connection=source.connection,
                        token=credentials,
                        client=client,
                        start=start,
                        end=end,
                        deadline=deadline,
                    )

            return await asyncio.gather(*(one(s, c) for s, c in jobs), return_exceptions=True)

    results = async_to_sync(run)()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for error in errors:
            if not isinstance(error, ProviderError | DomainError):
                raise error  # a bug, not a provider's answer
        raise _worst(errors)
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
        fresh = _fetch(jobs, fetch_start, fetch_end)
        cache.set_many(
            {keys[s.connection.pk]: _pack(b) for (s, _), b in zip(jobs, fresh, strict=True)},
            timeout=settings.AVAILABILITY_CACHE_SECONDS,
        )
        found.update({s.connection.pk: b for (s, _), b in zip(jobs, fresh, strict=True)})
    return found, len(sources) - len(todo)


# --- Working hours per participant ---------------------------------------------------------


def zone(name, field):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(400, "invalid", f"{field}: unknown IANA time zone {name!r}.", field=field) from None


def _hours_for(asked, stored, default):
    """WorkingHours and where they came from: the request's fields over the stored hours over the default."""
    asked = {k: v for k, v in (asked or {}).items() if v is not None}
    base = stored or default
    merged = {**base, **asked}
    origin = "request" if asked else ("microsoft" if stored else "default")
    hours = WorkingHours(
        time_zone=zone(merged["time_zone"], "users.working_hours.time_zone"),
        days=frozenset(merged["days"]),
        start=_as_time(merged["start"]),
        end=_as_time(merged["end"]),
    )
    return hours, origin


def _as_time(value):
    return value if isinstance(value, time) else time.fromisoformat(value)


# --- The service ---------------------------------------------------------------------


def availability_find(
    *,
    caller,
    users,
    start,
    end,
    duration_minutes,
    time_zone="",
    working_hours=None,
    granularity_minutes=15,
    working_hours_policy="preferred",
    max_results=20,
):
    """The common free slots of `users` ([{"id": n, "working_hours": {...}|None}]) in [start, end), ranked."""
    if end <= start:
        raise DomainError(400, "invalid", "end: the window must end after it starts.", field="end")
    if end - start > timedelta(days=settings.AVAILABILITY_MAX_WINDOW_DAYS):
        raise DomainError(
            400,
            "invalid",
            f"end: the window may span at most {settings.AVAILABILITY_MAX_WINDOW_DAYS} days.",
            field="end",
        )
    duration = timedelta(minutes=duration_minutes)
    if duration_minutes <= 0:
        raise DomainError(400, "invalid", "duration_minutes: must be at least 1.", field="duration_minutes")
    if duration > end - start:
        raise DomainError(400, "invalid", "duration_minutes: longer than the window.", field="duration_minutes")
    if time_zone:
        zone(time_zone, "time_zone")
    default = {
        "time_zone": time_zone or "UTC",
        "days": list((working_hours or {}).get("days") or DEFAULT_DAYS),
        "start": (working_hours or {}).get("start") or DEFAULT_START,
        "end": (working_hours or {}).get("end") or DEFAULT_END,
    }

    ids = list(dict.fromkeys(u["id"] for u in users))
    asked = {u["id"]: u.get("working_hours") for u in users}
    people = _participants(caller, ids)
    sources = _sources(people)
    busy, from_cache = busy_for([s for ss in sources.values() for s in ss], caller=caller, start=start, end=end)

    hours, used = {}, []
    for person in people:
        answers = [busy[s.connection.pk] for s in sources[person.pk]]
        stored = next((a.working_hours for a in answers if a.working_hours), None)
        hours[person.pk], origin = _hours_for(asked.get(person.pk), stored, default)
        wh = hours[person.pk]
        used.append(
            {
                "id": person.pk,
                "working_hours": {
                    "time_zone": wh.time_zone.key,
                    "days": sorted(wh.days),
                    "start": wh.start.strftime("%H:%M"),
                    "end": wh.end.strftime("%H:%M"),
                    "source": origin,
                },
            }
        )

    busy_by_user = {
        person.pk: [i for s in sources[person.pk] for i in busy[s.connection.pk].intervals] for person in people
    }
    slots = free_slots(
        start=start,
        end=end,
        duration=duration,
        busy=busy_by_user,
        hours=hours,
        granularity=timedelta(minutes=granularity_minutes),
        policy=working_hours_policy,
        limit=max_results,
    )
    warnings = [
        {
            "user": caller.pk,
            "connection": s.connection.pk,
            "detail": f"{len(busy[s.connection.pk].skipped)} calendar(s) no longer exist at the provider; left out.",
        }
        for s in sources.get(caller.pk, [])
        if busy[s.connection.pk].skipped
    ]
    return {
        "start": start,
        "end": end,
        "duration_minutes": duration_minutes,
        "granularity_minutes": granularity_minutes,
        "working_hours_policy": working_hours_policy,
        "ranking": RANKING,
        "users": used,
        "slots": [
            {
                "start": s.start,
                "end": s.end,
                "score": s.score,
                "inside_working_hours": s.inside,
                "outside_working_hours_of": list(s.outside),
            }
            for s in slots
        ],
        "connections": {"asked": len(busy) - from_cache, "cached": from_cache},
        "warnings": warnings,
    }
