"""Duffel's flights API over httpx: the only module that speaks Duffel.

Calls: `POST /air/offer_requests` (the search; `return_offers=true` answers the
offers inline, or with DUFFEL_OFFERS_PAGE_SIZE set the request is created
without them and `GET /air/offers?offer_request_id=...` is read page by page,
following `meta.after`), and `GET /places/suggestions`. Every HTTP request is
one `DUFFEL.attempt` (gateway.attempt: one ProviderCall row, the shared limiter, the breaker;
httpx's timeouts and transport failures translated once by `HttpxAdapter`),
with `Duffel-Version` and the bearer token on it, and no retries of its own.

Duffel's answers shape what the hub does next:
- `ratelimit-limit` / `ratelimit-remaining` / `ratelimit-reset` on every answer
  feed the shared limiter (`_pace`): with nothing left the endpoint's scope is
  blocked until the reset; with little left, the rest are spread evenly over the
  time to the reset, so the hub slows down before Duffel has to refuse it.
- A 429 (`rate_limit_exceeded`) is retryable no sooner than its reset.
- Errors arrive as `{"errors": [{type, title, message, code, source}], "meta":
  {status, request_id}}`; a 422 `validation_error` is the search's fault (the
  hub's 422, naming Duffel's field), other 4xx are permanent, 5xx retryable.
"""

import email.utils
import functools
import re
import time
from datetime import datetime
from typing import Any

import httpx
import msgspec
import orjson
from django.conf import settings

from integrations import egress, gateway, limiter
from integrations.errors import PermanentError, ProviderUnavailable, error_from_http, parse_retry_after
from integrations.providers import HttpxAdapter
from integrations.timezones import zone_or_none

from . import NO_CARRIER, Baggage, Carrier, Condition, Offer, Place, SearchQuery, SearchResult, Segment, Slice

PROVIDER = "duffel"


class SearchRejected(PermanentError):
    """Duffel's 422: it refused the search itself (a field our validation let through)."""

    api_status = 422
    api_code = "search_rejected"

    def __init__(self, *args, field=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.field = field

    def as_api_error(self):
        error = super().as_api_error()
        if self.field:
            error.extra["field"] = self.field
        return error

    def detail_sentence(self):
        return f"Duffel refused the search: {self.message}"


class DuffelAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Duffel"


DUFFEL = DuffelAdapter()


@functools.cache
def _transport():
    # One pooled transport per process: connections to Duffel are reused across requests. It takes the CA bundle
    # SSL_CERT_FILE names (trust_env=True), as Duffel's client always did; its proxy is the egress rule's.
    return egress.transport(trust_env=True)


def _headers():
    return {
        "Accept": "application/json",
        "Accept-Encoding": "gzip",
        "Authorization": f"Bearer {settings.DUFFEL_ACCESS_TOKEN}",
        "Duffel-Version": settings.DUFFEL_API_VERSION,
        "User-Agent": "integration-hub",
    }


# --- pacing ------------------------------------------------------------------------


def reset_seconds(value, *, now=None):
    """Seconds until `ratelimit-reset`: an HTTP date (Duffel's form), an epoch, an ISO time or delta seconds."""
    if value is None or str(value).strip() == "":
        return None
    raw = str(value).strip()
    now = time.time() if now is None else now
    try:
        number = float(raw)
    except ValueError:
        number = None
    if number is not None:
        # Large numbers are a moment (epoch seconds), small ones a delay.
        return max(0.0, number - now) if number > 1e9 else max(0.0, number)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        when = None
    if when is None:
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return parse_retry_after(raw)
    return max(0.0, when.timestamp() - now)


def _int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def pace(scope, headers):
    """Feed Duffel's rate-limit headers into the shared limiter for this endpoint's scope."""
    limit = _int(headers.get("ratelimit-limit"))
    remaining = _int(headers.get("ratelimit-remaining"))
    reset = reset_seconds(headers.get("ratelimit-reset"))
    if remaining is None or not reset:
        return None
    if remaining <= 0:
        wait = reset
    elif limit and remaining < limit * settings.DUFFEL_PACE_BELOW_FRACTION:
        # Spread what is left of the window evenly until it resets.
        wait = reset / (remaining + 1)
    else:
        return None
    limiter.block(PROVIDER, scope, wait)
    return wait


# --- errors --------------------------------------------------------------------------


def _error(response):
    try:
        body = response.json()
    except ValueError:
        body = {}
    first = (body.get("errors") or [{}])[0] if isinstance(body, dict) else {}
    meta = body.get("meta") or {} if isinstance(body, dict) else {}
    code = first.get("code") or first.get("type")
    message = ": ".join(p for p in (first.get("title"), first.get("message")) if p) or f"HTTP {response.status_code}"
    request_id = meta.get("request_id") or response.headers.get("x-request-id")
    status = response.status_code
    if status == 422 and first.get("type") == "validation_error":
        source = first.get("source") or {}
        return SearchRejected(
            PROVIDER,
            message,
            code=code,
            http_status=status,
            request_id=request_id,
            field=source.get("field") or source.get("pointer"),
        )
    error = error_from_http(
        PROVIDER, status, headers=dict(response.headers), code=code, message=message, request_id=request_id
    )
    if status == 429:
        # Duffel says when its window resets; Retry-After (if any) stays a floor.
        reset = reset_seconds(response.headers.get("ratelimit-reset"))
        if reset is not None:
            error.retry_after = max(error.retry_after or 0.0, reset)
    return error


def _send(method, path, *, params=None, json=None):
    """One HTTP request to Duffel, its answer read whole (gzip undone) and its connection back in the pool.

    Straight to the transport (the egress rule's, with its pool), not through an httpx.Client: the client's
    layers (merging the base URL, params and headers, the auth and redirect steps, reading every answer's
    cookies into a jar through email.message) cost ~0.4 ms of thread CPU for Duffel's 438 kB answer of 100
    offers (1.35 ms against 1.73, in the hub), on the path a searching client waits on (issue 13: a fresh search
    adds <= 5 ms over Duffel). Duffel sends no cookies; the client never followed its redirects either."""
    headers = _headers()
    content = None
    if json is not None:
        content = orjson.dumps(json)
        headers["Content-Type"] = "application/json"
    request = httpx.Request(
        method,
        settings.DUFFEL_API_BASE.rstrip("/") + path,
        params=params,
        headers=headers,
        content=content,
        extensions={"timeout": httpx.Timeout(gateway.timeout_for(PROVIDER)).as_dict()},
    )
    response = _transport().handle_request(request)
    response.request = request
    try:
        response.read()
    finally:
        response.close()
    return response


def _request(method, path, *, operation, scope, owner=None, params=None, json=None, decode=orjson.loads, units=None):
    """One HTTP request as one gateway attempt; the body as `decode` reads it.

    The call's log row is written after the answer is sent: a searching client
    waits on Duffel already and should not also wait on our bookkeeping."""
    with DUFFEL.attempt(operation, owner=owner, scope=scope, log_after_response=True) as att:
        response = _send(method, path, params=params, json=json)
        pace(scope, response.headers)
        if response.status_code >= 400:
            raise _error(response)
        try:
            body = decode(response.content)
        except (ValueError, msgspec.DecodeError) as exc:  # msgspec.ValidationError is a DecodeError
            raise ProviderUnavailable(PROVIDER, f"Duffel's answer could not be read ({exc})") from None
        att.record(
            http_status=response.status_code,
            request_id=response.headers.get("x-request-id") or "",
            units=units(body) if units else None,
        )
    return body


# --- Duffel's offers as they arrive ------------------------------------------------------
# Only the fields the hub reads. msgspec decodes a search answer (100-500 kB) straight into
# these and skips the rest of Duffel's verbose objects (every airport in full, per segment)
# without building them: a third of the time orjson took to build dicts of it all. Values are
# `Any` where Duffel's docs give a type the hub only passes on, so a number sent as a string
# (or the reverse) is carried through rather than refused; a wrong shape is unreadable.
# gc=False (as the hub's own types in travel.providers): a decoded answer is a tree, never a cycle,
# and a 100-offer answer otherwise adds ~1,000 objects to the cyclic collector's count, each a
# step towards a collection that walks the worker's whole heap in the middle of the search.


class _Place(msgspec.Struct, gc=False):
    iata_code: Any = None
    time_zone: Any = None


class _Aircraft(msgspec.Struct, gc=False):
    name: Any = None


class _SegmentPassenger(msgspec.Struct, gc=False):
    cabin_class: Any = None
    baggages: list[Baggage] | None = None


class _Segment(msgspec.Struct, gc=False):
    marketing_carrier: Carrier | None = None
    operating_carrier: Carrier | None = None
    marketing_carrier_flight_number: Any = None
    aircraft: _Aircraft | None = None
    origin: _Place | None = None
    destination: _Place | None = None
    departing_at: Any = None
    arriving_at: Any = None
    duration: Any = None
    passengers: list[_SegmentPassenger] | None = None
    stops: list[msgspec.Raw] | None = None  # technical stops: only counted


class _Slice(msgspec.Struct, gc=False):
    origin: _Place | None = None
    destination: _Place | None = None
    duration: Any = None
    segments: list[_Segment] | None = None
    fare_brand_name: Any = None


class _Conditions(msgspec.Struct, gc=False):
    refund_before_departure: Condition | None = None
    change_before_departure: Condition | None = None


class _Offer(msgspec.Struct, gc=False):
    id: Any
    total_amount: Any
    total_currency: Any
    base_amount: Any = None
    tax_amount: Any = None
    owner: Carrier | None = None
    slices: list[_Slice] | None = None
    expires_at: Any = None
    conditions: _Conditions | None = None
    total_emissions_kg: Any = None


class _OfferRequest(msgspec.Struct, gc=False):
    id: Any
    offers: list[_Offer] | None = None


class _OfferRequestAnswer(msgspec.Struct, gc=False):
    data: _OfferRequest


class _PageMeta(msgspec.Struct, gc=False):
    after: Any = None


class _OffersPage(msgspec.Struct, gc=False):
    data: list[_Offer] | None = None
    meta: _PageMeta | None = None


_read_offer_request = msgspec.json.Decoder(_OfferRequestAnswer).decode
_read_offers_page = msgspec.json.Decoder(_OffersPage).decode
_NO_PLACE = _Place()


# --- normalisation ----------------------------------------------------------------------

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:[\d.]+S)?)?$")


@functools.lru_cache(maxsize=4096)
def duration_minutes(value):
    """Minutes in an ISO 8601 duration such as PT02H26M or P1DT2H; None when absent or odd.

    Cached: the offers of one search repeat a handful of durations hundreds of times."""
    match = _DURATION.match(value or "")
    if not match or value in ("P", "PT"):
        return None
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + minutes


def elapsed_minutes(departing_at, origin_zone, arriving_at, destination_zone):
    """Minutes from a departure to an arrival, each a local time at its own airport; None when one is unknown.

    Duffel sends a slice's (or a segment's) `duration` as null at times: this is what it would have said."""
    try:
        start, end = datetime.fromisoformat(departing_at), datetime.fromisoformat(arriving_at)
    except (TypeError, ValueError):  # no time, or not one
        return None
    start = start if start.tzinfo else start.replace(tzinfo=zone_or_none(origin_zone))
    end = end if end.tzinfo else end.replace(tzinfo=zone_or_none(destination_zone))
    if start.tzinfo is None or end.tzinfo is None:  # a zone Duffel did not name, or one that is none
        return None
    minutes = (end - start).total_seconds() // 60
    return int(minutes) if minutes >= 0 else None


def _segment(raw):
    marketing = raw.marketing_carrier or NO_CARRIER
    origin, destination = raw.origin or _NO_PLACE, raw.destination or _NO_PLACE
    passenger = raw.passengers[0] if raw.passengers else None
    duration = duration_minutes(raw.duration)
    if duration is None:
        duration = elapsed_minutes(raw.departing_at, origin.time_zone, raw.arriving_at, destination.time_zone)
    return Segment(
        carrier=marketing,
        operating_carrier=raw.operating_carrier or NO_CARRIER,
        flight_number=f"{marketing.iata_code or ''}{raw.marketing_carrier_flight_number or ''}",
        aircraft=raw.aircraft.name if raw.aircraft else None,
        origin=origin.iata_code,
        destination=destination.iata_code,
        departing_at=raw.departing_at,
        arriving_at=raw.arriving_at,
        origin_time_zone=origin.time_zone,
        destination_time_zone=destination.time_zone,
        duration_minutes=duration,
        cabin_class=passenger.cabin_class if passenger else None,
        baggage=(passenger.baggages or []) if passenger else [],
    )


def _slice(raw):
    segments = raw.segments or []
    normalised = [_segment(s) for s in segments]
    duration = duration_minutes(raw.duration)
    if duration is None and normalised:
        first, last = normalised[0], normalised[-1]
        duration = elapsed_minutes(
            first.departing_at, first.origin_time_zone, last.arriving_at, last.destination_time_zone
        )
    return Slice(
        origin=(raw.origin or _NO_PLACE).iata_code,
        destination=(raw.destination or _NO_PLACE).iata_code,
        duration_minutes=duration,
        stops=max(0, len(segments) - 1) + sum(len(s.stops or ()) for s in segments),
        segments=normalised,
        fare_brand=raw.fare_brand_name,
    )


def normalise_offer(raw):
    """The hub's Offer from one decoded Duffel offer (`_Offer`)."""
    conditions = raw.conditions
    refund = conditions.refund_before_departure if conditions else None
    change = conditions.change_before_departure if conditions else None
    return Offer(
        id=raw.id,
        total_amount=raw.total_amount,
        total_currency=raw.total_currency,
        base_amount=raw.base_amount,
        tax_amount=raw.tax_amount,
        owner=raw.owner or NO_CARRIER,
        slices=[_slice(s) for s in raw.slices or []],
        expires_at=raw.expires_at,
        refundable=refund.allowed if refund else None,
        changeable=change.allowed if change else None,
        conditions={"refund_before_departure": refund, "change_before_departure": change}
        if (refund or change)
        else None,
        emissions_kg=raw.total_emissions_kg,
    )


def normalise_place(raw):
    return Place(
        type=raw.get("type") or "airport",
        iata_code=raw.get("iata_code"),
        name=raw.get("name"),
        city_name=raw.get("city_name") or (raw.get("city") or {}).get("name"),
        country=raw.get("iata_country_code"),
        time_zone=raw.get("time_zone"),
        latitude=raw.get("latitude"),
        longitude=raw.get("longitude"),
        airports=[a.get("iata_code") for a in raw.get("airports") or [] if a.get("iata_code")],
    )


# --- the provider ---------------------------------------------------------------------------


def offer_request_body(query: SearchQuery):
    slices = []
    for s in query.slices:
        item = {"origin": s.origin, "destination": s.destination, "departure_date": s.departure_date}
        if s.departure_time_from or s.departure_time_to:
            item["departure_time"] = {"from": s.departure_time_from or "00:00", "to": s.departure_time_to or "23:59"}
        slices.append(item)
    passengers = (
        [{"type": "adult"}] * query.adults
        + [{"age": age} for age in query.child_ages]
        + [{"type": "infant_without_seat"}] * query.infants
    )
    data = {"slices": slices, "passengers": passengers, "cabin_class": query.cabin_class}
    if query.max_connections is not None:
        data["max_connections"] = query.max_connections
    return {"data": data}


_TOKEN_MODE = re.compile(r"duffel_(test|live)_")


class DuffelProvider:
    name = PROVIDER

    def cache_scope(self):
        """Test or live: a test token searches Duffel's test content, whose offers cannot be booked live.

        The mode, not the token: a rotated token of the same mode answers the same offers."""
        mode = _TOKEN_MODE.match(settings.DUFFEL_ACCESS_TOKEN or "")
        return f"{PROVIDER}:{mode.group(1) if mode else 'other'}"

    def search(self, query, *, owner=None):
        page_size = settings.DUFFEL_OFFERS_PAGE_SIZE
        answer = _request(
            "POST",
            "/air/offer_requests",
            operation="offer_request.create",
            scope="offer_requests",
            owner=owner,
            params={
                "return_offers": "false" if page_size else "true",
                "supplier_timeout": settings.DUFFEL_SUPPLIER_TIMEOUT_MS,
            },
            json=offer_request_body(query),
            decode=_read_offer_request,
            units=lambda answer: {"offers": len(answer.data.offers or ())},
        )
        raw_offers = answer.data.offers or []
        if page_size:
            raw_offers = self._all_offers(answer.data.id, page_size, owner=owner)
        return SearchResult(
            offers=[normalise_offer(o) for o in raw_offers], provider=PROVIDER, search_id=answer.data.id
        )

    def _all_offers(self, offer_request_id, page_size, *, owner):
        """Every offer of a request, one /air/offers page (one gateway attempt) at a time."""
        offers, after = [], None
        while len(offers) < settings.TRAVEL_MAX_OFFERS:
            params = {"offer_request_id": offer_request_id, "limit": page_size, "sort": "total_amount"}
            if after:
                params["after"] = after
            page = _request(
                "GET",
                "/air/offers",
                operation="offers.list",
                scope="offers",
                owner=owner,
                params=params,
                decode=_read_offers_page,
                units=lambda page: {"offers": len(page.data or ())},
            )
            offers.extend(page.data or [])
            after = page.meta.after if page.meta else None
            if not after:
                break
        return offers[: settings.TRAVEL_MAX_OFFERS]

    def places(self, text, *, owner=None):
        body = _request(
            "GET",
            "/places/suggestions",
            operation="places.suggest",
            scope="places",
            owner=owner,
            # `query` is deprecated in favour of `name`.
            params={"name": text},
        )
        return [normalise_place(p) for p in body.get("data") or []]
