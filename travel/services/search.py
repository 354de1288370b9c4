"""Flight search: one provider call per distinct search, cached, shared, filtered locally.

    flight_search(user=..., params=...)      -> the first page of normalised offers
    flight_search_page(search_id=..., cursor=...) -> a later page of the same answer

An answer's offers are `orjson.Fragment`s: each offer's JSON, written once when
the search was cached and copied into every answer as it is (the travel views
render with integrations.api.renderers.OrjsonRenderer).

The cache key is the part of the request the provider sees (slices,
passengers, cabin, max connections: `SearchQuery`) and the provider's
`cache_scope` (Duffel's test or live content). Airline lists, max price
and sort are applied to the cached offers on every answer, so two users who
filter the same route differently share one provider call.

A cached answer lives TRAVEL_CACHE_TTL_SECONDS, never longer than its
latest-expiring offer, and each answer drops offers whose `expires_at` has
passed; when every cached offer has expired, the search runs again.
`refresh=true` skips the cache.

Single flight: identical searches that arrive together make one provider call.
The first (the leader) takes a lock (atomic SET NX on Redis, in the same script
as its read of the cache: `integrations.cache.get_or_add`) naming its flight
and when its provider call must have ended, calls, leaves the answer (or the
error, for a few seconds, so eight callers do not each spend a search to learn
the same 429), drops the lock and wakes its flight (`integrations.cache.wake`;
an answer, the release and the wake-up are one Redis round trip). A leader
answering a web request does that once its own client's answer has been sent
(`integrations.context.after_response`): until then the lock stands, so the
others wait for the entry as they waited for the provider, and a next page
asked for at once waits for it too (`_answer_being_cached`). The others
(followers) block on that flight (`wait_woken`: XREAD BLOCK on Redis, a thread
event on the local-memory cache of `make run`) and read the answer the moment
it is written; nobody sleeps or polls in the request. A follower waits at most
until its own deadline (TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS after it arrived),
even when the leader's worst case is longer (a price watch's check in a worker
may take a minute; Duffel usually answers in seconds); if the leader has not
answered by then, it answers 503 with a Retry-After of the leader's time left.
A leader that died without waking anyone is noticed when its call's time is up
(plus WAKE_GRACE_SECONDS): the lock expires and a follower takes it.
"""

import base64
import functools
import hashlib
import json
import math
import re
import time
import uuid
from datetime import datetime

import orjson
from django.conf import settings
from django.core.cache import cache, caches

from integrations import gateway
from integrations.cache import get_or_add, set_and_delete, wait_woken, wake
from integrations.context import after_response
from integrations.errors import DomainError, ProviderError
from integrations.registry import require

from ..providers import SearchQuery, SliceQuery, encode_offer, get_flight_provider

# How long after the leader's call must have ended a follower looks again by itself (a leader that died
# between leaving its answer and waking its flight); a live leader wakes its followers at once.
WAKE_GRACE_SECONDS = 1.0
_SEARCH_ID = re.compile(r"[0-9a-f]{40}")
# How long a failed search is shared with the callers who waited on it.
ERROR_SHARE_SECONDS = 3
# v2: offers are stored as their JSON (bytes), not as dicts. v3: the facts name each flight's airlines.
KEY_VERSION = "v3"
# Duffel answers with no offers when no airline replied within its supplier timeout: that is no reason to
# tell everyone for an hour that the route has no flights. An empty answer is shared this long at most.
EMPTY_ANSWER_SECONDS = 60


def query_from_params(params):
    """The provider-facing part of a validated search request."""
    passengers = params["passengers"]
    return SearchQuery(
        slices=tuple(
            SliceQuery(
                origin=s["origin"],
                destination=s["destination"],
                departure_date=s["departure_date"].isoformat(),
                departure_time_from=s.get("departure_time_from"),
                departure_time_to=s.get("departure_time_to"),
            )
            for s in params["slices"]
        ),
        adults=passengers["adults"],
        child_ages=tuple(sorted(passengers.get("children") or ())),
        infants=passengers.get("infants", 0),
        cabin_class=params["cabin_class"],
        max_connections=params["max_connections"],
    )


def search_key(query):
    # The provider's content is part of the key: switching DUFFEL_ACCESS_TOKEN from a test token to a live one
    # must not answer live searches with the test offers still cached (they cannot be booked).
    blob = json.dumps(
        {"scope": get_flight_provider().cache_scope(), **query.canonical()}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def _cache_key(key):
    return f"travel:search:{KEY_VERSION}:{key}"


def _lock_key(key):
    return f"travel:search:lock:{key}"


def _error_key(key):
    return f"travel:search:error:{key}"


def _flight_key(key, token):
    return f"travel:search:flight:{key}:{token}"


# --- entries -------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _ts(iso):
    """Epoch seconds of an ISO time (cached: a search's offers share a handful of expiry times)."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _price(value):
    """A decimal-string price as a float, for sorting and max_price; one that is not a number sorts last."""
    try:
        return float(str(value))
    except (ValueError, TypeError):
        return math.inf


def _facts(offer):
    """What filters and sorts read, computed once when the answer is stored.

    Per offer of every fresh search, before its answer (100 offers: 0.13 ms, 0.28 before this was written
    out as loops over the offer's flights instead of sets and sorted generators per segment)."""
    owner = offer.owner.iata_code
    carriers = {owner}
    flights = []  # each segment's airlines: the one that sells it (its flight number) and the one that flies it
    # A duration nobody knows (no slices, or a slice's unknown) sorts after every known one, never as the shortest.
    duration = 0 if offer.slices else None
    for s in offer.slices:
        if duration is not None:
            duration = None if s.duration_minutes is None else duration + s.duration_minutes
        for seg in s.segments:
            marketing, operating = seg.carrier.iata_code, seg.operating_carrier.iata_code
            if marketing and operating and marketing != operating:
                flight = [marketing, operating] if marketing < operating else [operating, marketing]
            else:
                flight = [marketing or operating] if (marketing or operating) else []
            carriers.update(flight)
            flights.append(flight)
    first = offer.slices[0].segments if offer.slices else None
    return {
        "expires": _ts(offer.expires_at),
        "price": _price(offer.total_amount),
        "duration": math.inf if duration is None else duration,
        "departure": (first[0].departing_at if first else "") or "",
        "owner": owner,
        "carriers": sorted(c for c in carriers if c),
        "flights": flights,
    }


def _entry(result, now):
    """The cached answer: each kept offer beside the facts about it.

    Each offer becomes its JSON (written once, then copied into every answer) when an answer first shows it
    (`_offer_json`) or before the entry is cached (`_all_json`): a leader's client waits only for its own
    page's offers to be written, not for every offer kept (TRAVEL_MAX_OFFERS, up to 1,000; 50 a page)."""
    facts = [_facts(o) for o in result.offers]
    order = sorted(range(len(facts)), key=lambda i: facts[i]["price"])[: settings.TRAVEL_MAX_OFFERS]
    return {
        "cached_at": now,
        "provider": result.provider,
        "provider_search_id": result.search_id,
        "offers": [result.offers[i] for i in order],
        "facts": [facts[i] for i in order],
    }


def _offer_json(entry, index):
    """One offer's JSON, written now if the entry still holds the offer itself (its leader's answer)."""
    offer = entry["offers"][index]
    if not isinstance(offer, bytes):
        offer = entry["offers"][index] = encode_offer(offer)
    return offer


def _all_json(entry):
    """The entry with every offer as its JSON, as it is cached."""
    entry["offers"] = [o if isinstance(o, bytes) else encode_offer(o) for o in entry["offers"]]
    return entry


def offer_at(entry, index):
    """One cached offer as data (the API's offer shape)."""
    return orjson.loads(_offer_json(entry, index))


def _ttl(entry, now):
    expiries = [f["expires"] for f in entry["facts"] if f["expires"]]
    ttl = settings.TRAVEL_CACHE_TTL_SECONDS
    if not entry["offers"]:
        ttl = min(ttl, EMPTY_ANSWER_SECONDS)
    if expiries:
        ttl = min(ttl, max(expiries) - now)
    return max(1, int(ttl))


def _usable(entry, now, *, not_before=None):
    """The entry if it still has something to show (and is newer than not_before), else None."""
    if not entry:
        return None
    if not_before is not None and entry["cached_at"] < not_before:
        return None
    if entry["offers"] and not any(f["expires"] is None or f["expires"] > now for f in entry["facts"]):
        return None  # every offer has expired: search again
    if not entry["offers"] and now - entry["cached_at"] >= EMPTY_ANSWER_SECONDS:
        return None  # no airline answered in time then: ask again
    return entry


# --- single flight ------------------------------------------------------------------


def _shared_error(exc):
    api = exc.as_api_error() if isinstance(exc, ProviderError) else exc
    return {"status": api.status, "code": api.code, "detail": api.detail, "headers": api.headers, "extra": api.extra}


def _raise_shared(err):
    raise DomainError(err["status"], err["code"], err["detail"], headers=err["headers"], **err["extra"])


def _busy(retry_after):
    seconds = max(1, math.ceil(retry_after))
    return DomainError(
        503,
        "search_busy",
        "An identical search is still running at the provider; retry in a few seconds.",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


def _fetch(query, key, *, user, refresh, max_age=None):
    """(entry, from_cache): the cached answer, or one provider call shared by every identical caller.

    `max_age` (seconds) refuses cached answers older than that (a price watch wants today's price).
    """
    started = time.time()
    ck = _cache_key(key)
    not_before = started if refresh else (started - max_age if max_age is not None else None)
    lock, token = _lock_key(key), uuid.uuid4().hex
    flight = (_flight_key(key, token), ERROR_SHARE_SECONDS + WAKE_GRACE_SECONDS)  # what the leader wakes
    call_seconds = gateway.timeout_for("duffel")
    lock_ttl = int(max(settings.TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS, call_seconds)) + 5
    deadline = time.monotonic() + settings.TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS
    # A search not in the cache reads it and takes the lock in one round trip (one atomic script on Redis),
    # not three (read, lock, read again). `took`: the lock was taken while no answer was cached; `tried`:
    # the lock was tried already (it is held: wait for its holder without asking for it again first).
    took = tried = False
    if not refresh:
        found, took = get_or_add(
            caches["default"], ck, lock, {"token": token, "until": started + call_seconds}, timeout=lock_ttl
        )
        entry = _usable(found, started, not_before=not_before)
        if entry:
            return entry, True
        tried = found is None  # the script asks for the lock only when nothing is cached
    while True:
        if took or (
            not tried and cache.add(lock, {"token": token, "until": time.time() + call_seconds}, timeout=lock_ttl)
        ):
            released = False
            try:
                if not refresh and not took:
                    # The caller before us may have answered between our read and the lock.
                    entry = _usable(cache.get(ck), time.time(), not_before=not_before or started)
                    if entry:
                        return entry, True
                try:
                    result = get_flight_provider().search(query, owner=user)
                except (ProviderError, DomainError) as exc:
                    cache.set(_error_key(key), {"at": time.time(), **_shared_error(exc)}, ERROR_SHARE_SECONDS)
                    raise
                entry = _entry(result, time.time())
                # The client has its offers now; the cache entry, the lock's release and the followers'
                # wake-up (one round trip) follow once its answer has been sent. Until then the lock still
                # stands, so an identical search waits for the entry as it waits for the provider.
                after_response(functools.partial(_leave_answer, ck, entry, lock, flight), first=True)
                released = True
                return entry, False
            finally:
                if not released:
                    # Only the holder gets here, and the provider call's timeout is shorter than the
                    # lock's TTL, so the lock is still ours: delete it without reading it first.
                    cache.delete(lock)
                    # The error left (or nothing, if we failed otherwise): the followers look now.
                    wake(caches["default"], *flight)
        tried = False  # from now on, each look ends in another try for the lock
        # Someone else is asking the provider: block until they wake us, within our deadline.
        holder = cache.get(lock)
        if holder is not None:
            left = deadline - time.monotonic()
            # A holder from before flights had names (a rolling deploy) never wakes anyone: look again soon.
            if not isinstance(holder, dict):
                holder = {"token": str(holder), "until": time.time()}
            # `until` is the holder's worst case (a worker's call may last a minute); the provider usually
            # answers in seconds, so wait for it within our deadline, and only then say when to come back.
            due = holder["until"] - time.time()
            wait_woken(
                caches["default"], _flight_key(key, holder["token"]), min(left, max(0.0, due) + WAKE_GRACE_SECONDS)
            )
        if cache.get(lock) is None:
            entry = _usable(cache.get(ck), time.time(), not_before=not_before)
            if entry:
                return entry, True
            err = cache.get(_error_key(key))
            if err and err["at"] >= started:
                _raise_shared(err)
            # Neither: the holder died or its answer expired already; take the lock ourselves (in time).
        if time.monotonic() >= deadline:
            holder = cache.get(lock)
            raise _busy(holder["until"] - time.time() if isinstance(holder, dict) else 5)


def _leave_answer(ck, entry, lock, flight):
    """Cache the leader's answer, drop its lock and wake its flight (after its own answer was sent)."""
    try:
        set_and_delete(caches["default"], ck, _all_json(entry), _ttl(entry, time.time()), lock, and_wake=flight)
    except Exception:
        # Not cached: the followers must not wait out the lock for an entry that will not come.
        cache.delete(lock)
        wake(caches["default"], *flight)
        raise


# --- answers -----------------------------------------------------------------------------

SORTS = {
    "price": lambda f: (f["price"], f["duration"]),
    "duration": lambda f: (f["duration"], f["price"]),
    "departure": lambda f: (f["departure"], f["price"]),
}


def _on_every_flight(facts, airlines):
    """Whether each flight of the offer is sold or flown by one of `airlines`; the owner sells them all."""
    if facts["owner"] in airlines:
        return True
    flights = facts["flights"]
    return bool(flights) and all(airlines.intersection(flight) for flight in flights)


def _select(entry, *, filters, now):
    """Indexes of the visible offers, filtered and sorted.

    Both airline filters read an offer's flights (segments) the same way: an airline is on a flight when it
    sells the offer (Duffel's `owner`), sells the flight under its flight number (`marketing_carrier`) or flies
    it (`operating_carrier`), so a codeshare is on both its airlines' lists. `include_airlines` keeps the
    offers whose every flight has a listed airline on it, `exclude_airlines` drops those with a listed airline
    on any flight."""
    include = set(filters.get("include_airlines") or ())
    exclude = set(filters.get("exclude_airlines") or ())
    max_price = filters.get("max_price")
    max_price = float(max_price) if max_price is not None else None
    picked = []
    for i, f in enumerate(entry["facts"]):
        if f["expires"] is not None and f["expires"] <= now:
            continue  # never show an offer past its expires_at
        if include and not _on_every_flight(f, include):
            continue
        if exclude and exclude.intersection(f["carriers"]):
            continue
        if max_price is not None and f["price"] > max_price:
            continue
        picked.append(i)
    key = SORTS[filters.get("sort") or "price"]
    picked.sort(key=lambda i: key(entry["facts"][i]))
    return picked


def _encode_cursor(data):
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token):
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or not isinstance(data.get("o"), int) or not isinstance(data.get("f"), dict):
            raise ValueError
        if data.get("l") is not None and not isinstance(data["l"], int):
            raise ValueError
        if data.get("c") is not None and not isinstance(data["c"], (int, float)):
            raise ValueError
        filters = data["f"]
        if filters.get("sort", "price") not in SORTS:
            raise ValueError
        for name in ("include_airlines", "exclude_airlines"):
            codes = filters.get(name)
            if codes is not None and not (isinstance(codes, list) and all(isinstance(c, str) for c in codes)):
                raise ValueError
        if filters.get("max_price") is not None:
            float(filters["max_price"])
        return data
    except (ValueError, TypeError, OverflowError):  # OverflowError: an integer too large to be a float
        raise DomainError(
            400, "invalid", "The cursor is not one this API gave out; use `next` from a search answer.", field="cursor"
        ) from None


def _filters(params):
    return {
        "include_airlines": sorted(params.get("include_airlines") or []),
        "exclude_airlines": sorted(params.get("exclude_airlines") or []),
        "max_price": str(params["max_price"]) if params.get("max_price") is not None else None,
        "sort": params.get("sort") or "price",
    }


def _answer(key, entry, *, from_cache, filters, offset, limit, now):
    picked = _select(entry, filters=filters, now=now)
    page = picked[offset : offset + limit]
    nxt = offset + limit
    return {
        "search_id": key,
        "provider": entry["provider"],
        "cache": {"hit": from_cache, "age_seconds": round(max(0.0, now - entry["cached_at"]), 3)},
        "offer_count": len(picked),
        # Each offer's JSON as it was cached, copied into the answer (integrations.api.renderers).
        "offers": [orjson.Fragment(_offer_json(entry, i)) for i in page],
        # "c" names the answer the offsets count in: a later page of another answer would skip and repeat offers.
        "next": _encode_cursor({"o": nxt, "l": limit, "f": filters, "c": entry["cached_at"]})
        if nxt < len(picked)
        else None,
    }


def flight_search(*, user, params):
    """Search (or answer from the cache); the first page of the filtered, sorted offers."""
    require("duffel")  # not configured: 503 before any lock or cache, never an answer from old data
    query = query_from_params(params)
    key = search_key(query)
    entry, from_cache = _fetch(query, key, user=user, refresh=params.get("refresh", False))
    limit = params.get("limit") or settings.TRAVEL_PAGE_SIZE
    return _answer(key, entry, from_cache=from_cache, filters=_filters(params), offset=0, limit=limit, now=time.time())


def _answer_being_cached(key):
    """The entry its leader is writing (it answers first, then caches), once written; None if none comes.

    A client that asks for the next page the moment the first arrives can be faster than that write."""
    holder = cache.get(_lock_key(key))
    if not isinstance(holder, dict):
        return None
    wait_woken(caches["default"], _flight_key(key, holder["token"]), WAKE_GRACE_SECONDS)
    return _usable(cache.get(_cache_key(key)), time.time())


def flight_search_page(*, search_id, cursor):
    """A later page of the search answer the cursor came from (410 once it has expired or been replaced)."""
    if not _SEARCH_ID.fullmatch(search_id):
        raise DomainError(404, "not_found", "No such search; use the search_id of a search answer.")
    data = decode_cursor(cursor)
    entry = _usable(cache.get(_cache_key(search_id)), time.time())
    if entry is None or (data.get("c") is not None and data["c"] != entry["cached_at"]):
        entry = _answer_being_cached(search_id) or entry
    if entry is None:
        raise DomainError(
            410, "search_expired", "This search's offers have expired or left the cache; run the search again."
        )
    # The same search run again since (refresh=true, a price watch's check, an expired answer searched anew) is
    # another list of offers: the cursor's offset means nothing in it. A cursor without "c" was given out before
    # cursors named their answer (a rolling deploy) and is read as it was then.
    if data.get("c") is not None and data["c"] != entry["cached_at"]:
        raise DomainError(
            410,
            "search_expired",
            "This search has been run again since its first page and its offers changed; run the search again.",
        )
    limit = max(1, min(200, int(data.get("l") or settings.TRAVEL_PAGE_SIZE)))
    return _answer(
        search_id, entry, from_cache=True, filters=data["f"], offset=max(0, data["o"]), limit=limit, now=time.time()
    )
