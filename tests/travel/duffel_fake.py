"""A local fake of Duffel's flights API, answering in Duffel's own shapes.

The shapes follow Duffel's API reference and the fixtures of its official
client libraries: an offer request `{"data": {id, slices, passengers,
cabin_class, offers: [...]}}`, offers with `owner`, `slices[].segments[]`
(marketing/operating carriers, aircraft, origin/destination places with
`time_zone`, ISO 8601 `duration`, per-passenger `baggages` and cabin),
`conditions`, `total_emissions_kg`, `expires_at`; lists with
`meta: {after, before, limit}`; errors as `{"errors": [{type, title, message,
code, documentation_url, source}], "meta": {status, request_id}}`; and the
`ratelimit-limit` / `ratelimit-remaining` / `ratelimit-reset` headers (the
reset an HTTP date) on every answer.

Two front ends share it: `respx_routes(router)` for the test suite (HTTP
intercepted at httpx's transport) and `FakeDuffel.handle(method, path, query,
body)` for the stdlib server the benchmark starts.
"""

import base64
import copy
import email.utils
import json
import threading
import time
from datetime import UTC, datetime, timedelta

AIRPORTS = {
    "LHR": ("Heathrow Airport", "London", "LON", "GB", "Europe/London", 51.47, -0.4543),
    "LGW": ("Gatwick Airport", "London", "LON", "GB", "Europe/London", 51.1537, -0.1821),
    "JFK": ("John F. Kennedy International Airport", "New York", "NYC", "US", "America/New_York", 40.6413, -73.7781),
    "CDG": ("Paris Charles de Gaulle Airport", "Paris", "PAR", "FR", "Europe/Paris", 49.0097, 2.5479),
    "MAD": ("Adolfo Suárez Madrid–Barajas Airport", "Madrid", "MAD", "ES", "Europe/Madrid", 40.4983, -3.5676),
    "DXB": ("Dubai International Airport", "Dubai", "DXB", "AE", "Asia/Dubai", 25.2532, 55.3657),
    "BOS": ("Logan International Airport", "Boston", "BOS", "US", "America/New_York", 42.3656, -71.0096),
}
AIRLINES = {
    "BA": ("British Airways", "aln_00001876aqC8c5umZmrRds"),
    "AA": ("American Airlines", "aln_00001876aqC8c5umZmrRdt"),
    "VS": ("Virgin Atlantic", "aln_00001876aqC8c5umZmrRdu"),
    "AF": ("Air France", "aln_00001876aqC8c5umZmrRdv"),
    "IB": ("Iberia", "aln_00001876aqC8c5umZmrRdw"),
}


def place(code):
    name, city, city_code, country, tz, lat, lng = AIRPORTS.get(
        code, (f"{code} Airport", code.title(), code, "US", "America/New_York", 0.0, 0.0)
    )
    return {
        "type": "airport",
        "iata_code": code,
        "iata_city_code": city_code,
        "iata_country_code": country,
        "icao_code": None,
        "id": f"arp_{code.lower()}_{country.lower()}",
        "name": name,
        "city_name": city,
        "city": {"iata_code": city_code, "iata_country_code": country, "id": f"cit_{city_code.lower()}", "name": city},
        "latitude": lat,
        "longitude": lng,
        "time_zone": tz,
    }


def carrier(code):
    name, ident = AIRLINES.get(code, (code, f"aln_{code}"))
    return {"iata_code": code, "id": ident, "name": name, "logo_symbol_url": None, "conditions_of_carriage_url": None}


def iso_duration(minutes):
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return f"P{days}DT{hours:02d}H{mins:02d}M" if days else f"PT{hours:02d}H{mins:02d}M"


def segment(origin, destination, departing_at, minutes, airline="BA", number="117", operating=None, stops=()):
    arriving = departing_at + timedelta(minutes=minutes)
    return {
        "id": f"seg_{origin}{destination}{number}",
        "aircraft": {"iata_code": "77W", "id": "arc_00009UhD4ongolulWd91Ky", "name": "Boeing 777-300ER"},
        "arriving_at": arriving.strftime("%Y-%m-%dT%H:%M:%S"),
        "departing_at": departing_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "destination": place(destination),
        "destination_terminal": "5",
        "origin": place(origin),
        "origin_terminal": "B",
        "distance": "5540.2",
        "duration": iso_duration(minutes),
        "marketing_carrier": carrier(airline),
        "marketing_carrier_flight_number": number,
        "operating_carrier": carrier(operating or airline),
        "operating_carrier_flight_number": number,
        "stops": list(stops),
        "passengers": [
            {
                "baggages": [{"quantity": 1, "type": "checked"}, {"quantity": 1, "type": "carry_on"}],
                "cabin_class": "economy",
                "cabin_class_marketing_name": "Economy",
                "fare_basis_code": "OXZ0RO",
                "passenger_id": "pas_00009hj8USM7Ncg31cBCL",
                "cabin": None,
            }
        ],
    }


def offer_slice(origin, destination, date, *, airline="BA", via=None, depart="09:30", minutes=420, number="117"):
    start = datetime.fromisoformat(f"{date}T{depart}:00")
    if via:
        first = segment(origin, via, start, minutes // 2, airline, number)
        second = segment(
            via, destination, start + timedelta(minutes=minutes // 2 + 90), minutes // 2, airline, str(int(number) + 1)
        )
        segments, total = [first, second], minutes + 90
    else:
        segments, total = [segment(origin, destination, start, minutes, airline, number)], minutes
    return {
        "id": f"sli_{origin}{destination}{airline}{number}",
        "comparison_key": f"{origin}{destination}{number}",
        "conditions": {"change_before_departure": None},
        "destination": place(destination),
        "destination_type": "airport",
        "origin": place(origin),
        "origin_type": "airport",
        "duration": iso_duration(total),
        "fare_brand_name": "Basic",
        "segments": segments,
    }


def make_offer(
    slices,
    *,
    offer_id,
    total,
    currency="GBP",
    airline="BA",
    via=None,
    depart="09:30",
    minutes=420,
    expires_in=1800,
    refundable=True,
    changeable=False,
    emissions="460",
    number="117",
):
    """One offer in Duffel's shape for the given request slices [(origin, destination, date), ...]."""
    now = datetime.now(UTC)
    base = f"{float(total) * 0.7:.2f}"
    tax = f"{float(total) - float(base):.2f}"
    return {
        "id": offer_id,
        "allowed_passenger_identity_document_types": ["passport"],
        "base_amount": base,
        "base_currency": currency,
        "conditions": {
            "change_before_departure": {
                "allowed": changeable,
                "penalty_amount": None if not changeable else "50.00",
                "penalty_currency": currency,
            },
            "refund_before_departure": {
                "allowed": refundable,
                "penalty_amount": "100.00",
                "penalty_currency": currency,
            },
        },
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "updated_at": now.isoformat().replace("+00:00", "Z"),
        "expires_at": (now + timedelta(seconds=expires_in)).isoformat().replace("+00:00", "Z"),
        "live_mode": False,
        "owner": carrier(airline),
        "partial": False,
        "passenger_identity_documents_required": False,
        "passengers": [{"age": None, "id": "pas_00009hj8USM7Ncg31cBCL", "type": "adult"}],
        "payment_requirements": {
            "payment_required_by": None,
            "price_guarantee_expires_at": None,
            "requires_instant_payment": True,
        },
        "slices": [
            offer_slice(o, d, date, airline=airline, via=via, depart=depart, minutes=minutes, number=number)
            for (o, d, date) in slices
        ],
        "tax_amount": tax,
        "tax_currency": currency,
        "total_amount": f"{float(total):.2f}",
        "total_currency": currency,
        "total_emissions_kg": emissions,
    }


def default_offers(slices):
    """Four offers: cheapest with a stop, a fast direct one, an early one, a pricey one."""
    return [
        make_offer(
            slices, offer_id="off_0000AA", total="380.00", airline="AA", via="BOS", depart="11:00", number="101"
        ),
        make_offer(
            slices, offer_id="off_0000BA", total="450.00", airline="BA", depart="09:30", minutes=420, number="117"
        ),
        make_offer(
            slices, offer_id="off_0000VS", total="520.00", airline="VS", depart="06:15", minutes=430, number="3"
        ),
        make_offer(
            slices,
            offer_id="off_0000AF",
            total="610.00",
            airline="AF",
            via="CDG",
            depart="14:00",
            number="500",
            refundable=False,
            emissions="720",
        ),
    ]


def error_body(status, *, type_, code, title, message, field=None):
    err = {
        "type": type_,
        "title": title,
        "message": message,
        "code": code,
        "documentation_url": "https://duffel.com/docs/api/overview/errors",
    }
    if field:
        err["source"] = {"field": field, "pointer": f"/{field}"}
    return {"errors": [err], "meta": {"status": status, "request_id": "FZW0H3HdJwKk5HMAAKxB"}}


def http_date(seconds_from_now):
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


class FakeDuffel:
    """State of the fake: offers it answers, scripted failures, what it was asked."""

    def __init__(self, *, token="duffel_test_fake_token", rate_limit=120, window=60):
        self.token = token
        self.offers_for = default_offers  # fn(slices) -> raw offers
        self.places = [
            {**place("LHR"), "type": "airport"},
            {
                "type": "city",
                "iata_code": "LON",
                "iata_country_code": "GB",
                "id": "cit_lon_gb",
                "name": "London",
                "city_name": None,
                "time_zone": "Europe/London",
                "latitude": 51.5072,
                "longitude": -0.1276,
                "airports": [place("LHR"), place("LGW")],
            },
        ]
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.window = window
        self.delay = 0.0
        self.gate = None  # a threading.Event: when set, every request waits for it before answering
        self.failures = []  # [(status, body, headers)] served before normal answers
        self.requests = []  # (method, path, query, body, headers)
        self.offer_requests = {}
        self._lock = threading.Lock()
        self._n = 0

    # --- scripting ---------------------------------------------------------------
    def fail_next(self, status, body, headers=None):
        self.failures.append((status, body, headers or {}))

    def rate_limited_next(self, reset_in=30):
        self.fail_next(
            429,
            error_body(
                429,
                type_="rate_limit_error",
                code="rate_limit_exceeded",
                title="Rate limit exceeded",
                message="You have exceeded the rate limit; retry after the time in ratelimit-reset.",
            ),
            {"ratelimit-remaining": "0", "ratelimit-reset": http_date(reset_in)},
        )

    def calls(self, method, path):
        return [r for r in self.requests if r[0] == method and r[1] == path]

    # --- serving -----------------------------------------------------------------
    def _rate_headers(self):
        self.remaining = max(0, self.remaining - 1)
        return {
            "ratelimit-limit": str(self.rate_limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": http_date(self.window),
            "x-request-id": f"FZW0H3HdJwKk5HM{self._n:05d}",
        }

    def handle(self, method, path, query, body, headers):
        """(status, json body, headers) for one request."""
        if self.delay:
            time.sleep(self.delay)
        if self.gate is not None and not self.gate.wait(300):
            raise AssertionError("the test never opened the fake Duffel's gate")
        with self._lock:
            self._n += 1
            self.requests.append((method, path, dict(query), body, {k.lower(): v for k, v in headers.items()}))
            rate = self._rate_headers()
            if self.failures:
                status, payload, extra = self.failures.pop(0)
                return status, payload, {**rate, **extra}
        hdrs = {k.lower(): v for k, v in headers.items()}
        if hdrs.get("authorization") != f"Bearer {self.token}":
            return (
                401,
                error_body(
                    401,
                    type_="authentication_error",
                    code="access_token_not_found",
                    title="Access token not found",
                    message="The access token was not recognised.",
                ),
                rate,
            )
        if hdrs.get("duffel-version") not in ("v1", "v2"):
            return (
                400,
                error_body(
                    400,
                    type_="invalid_request_error",
                    code="unsupported_version",
                    title="Unsupported version",
                    message="Duffel-Version header is required.",
                ),
                rate,
            )
        if method == "POST" and path == "/air/offer_requests":
            return self._offer_request(query, body, rate)
        if method == "GET" and path == "/air/offers":
            return self._offers(query, rate)
        if method == "GET" and path == "/places/suggestions":
            name = (query.get("name") or "").lower()
            data = [
                p
                for p in self.places
                if name in p["name"].lower()
                or name in (p.get("city_name") or "").lower()
                or name == p["iata_code"].lower()
            ]
            return 200, {"meta": None, "data": data}, rate
        return (
            404,
            error_body(
                404,
                type_="invalid_request_error",
                code="not_found",
                title="Not found",
                message="The resource you are trying to access does not exist.",
            ),
            rate,
        )

    def _offer_request(self, query, body, rate):
        data = body["data"]
        slices = [(s["origin"], s["destination"], s["departure_date"]) for s in data["slices"]]
        with self._lock:
            orq = f"orq_0000{len(self.offer_requests):06d}"
        offers = self.offers_for(slices)
        self.offer_requests[orq] = offers
        answer = {
            "id": orq,
            "live_mode": False,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "cabin_class": data.get("cabin_class"),
            "client_key": "SFMyNTY.g2gDbQAAAA",
            "slices": [
                {
                    "origin": place(o),
                    "destination": place(d),
                    "departure_date": date,
                    "origin_type": "airport",
                    "destination_type": "airport",
                }
                for (o, d, date) in slices
            ],
            "passengers": [
                {"id": f"pas_{i:05d}", "type": p.get("type"), "age": p.get("age")}
                for i, p in enumerate(data["passengers"])
            ],
            "offers": copy.deepcopy(offers) if query.get("return_offers") != "false" else [],
        }
        return 201, {"data": answer}, rate

    def _offers(self, query, rate):
        offers = self.offer_requests.get(query.get("offer_request_id"))
        if offers is None:
            return (
                404,
                error_body(
                    404,
                    type_="invalid_request_error",
                    code="not_found",
                    title="Not found",
                    message="Offer request not found.",
                ),
                rate,
            )
        limit = int(query.get("limit") or 50)
        start = int(base64.b64decode(query["after"]).decode()) if query.get("after") else 0
        if query.get("sort") == "total_amount":
            offers = sorted(offers, key=lambda o: float(o["total_amount"]))
        page = offers[start : start + limit]
        after = base64.b64encode(str(start + limit).encode()).decode() if start + limit < len(offers) else None
        return 200, {"meta": {"limit": limit, "after": after, "before": None}, "data": copy.deepcopy(page)}, rate

    # --- respx ---------------------------------------------------------------------
    def respx_routes(self, router, base):
        import httpx

        def side_effect(request):
            body = json.loads(request.content) if request.content else None
            status, payload, headers = self.handle(
                request.method, request.url.path, dict(request.url.params), body, dict(request.headers)
            )
            return httpx.Response(status, json=payload, headers=headers)

        router.route(host=httpx.URL(base).host).mock(side_effect=side_effect)
        return router
