"""The flight provider interface: what travel.services needs from any flight API.

A provider is a small object with two methods:

    search(query: SearchQuery) -> SearchResult     # one search, every offer normalised
    places(text: str) -> list[Place]               # airport / city suggestions

and `cache_scope()`: what besides the query decides the offers (Duffel: test or
live content), so the search cache never answers one with the other's offers.

Each runs its HTTP calls inside `integrations.gateway.attempt` and raises the
hub's own errors (integrations.errors). Duffel is the only one today
(`travel.providers.duffel`); a second API is one more module here and one entry
in PROVIDERS, with nothing above this package changing. The types below are
the hub's language: the services, the cache and the API never see a vendor's
field names. An `Offer` is the API's offer as it stands: the search cache
writes it to JSON field by field, in the order declared here. The offer's
parts are msgspec Structs, so a provider can decode its answer straight into
the small ones (a carrier, a bag, a fare condition) and the cache encodes a
whole offer in one C call (`encode_offer`). They are `gc=False`: an offer is a
tree of plain values (never a reference cycle, which only the cyclic collector
could free), and untracked structs do not count towards its next collection,
which a search's hundreds of offers otherwise bring on in the worker's whole heap.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import msgspec


@dataclass(frozen=True)
class SliceQuery:
    origin: str
    destination: str
    departure_date: str  # ISO date
    departure_time_from: str | None = None  # "HH:MM", local to the origin
    departure_time_to: str | None = None


# At most one connection per slice when a search does not say: Duffel's default for an offer request that
# leaves max_connections out. The hub sends it always, so a search that leaves it out and one that sends 1
# are one search (one cache entry), and what "left out" means does not move if a provider's default does.
DEFAULT_MAX_CONNECTIONS = 1


@dataclass(frozen=True)
class SearchQuery:
    """What is sent to the provider: it decides the offers, so it is also the cache key."""

    slices: tuple[SliceQuery, ...]
    adults: int = 1
    child_ages: tuple[int, ...] = ()
    infants: int = 0
    cabin_class: str = "economy"
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def canonical(self):
        """The query as plain data (the search cache's key is its JSON): asdict's values, without its
        recursive deep copy (~35 us of every search's path; the values are strings and numbers)."""
        return {
            "slices": [dict(vars(s)) for s in self.slices],
            "adults": self.adults,
            "child_ages": list(self.child_ages),
            "infants": self.infants,
            "cabin_class": self.cabin_class,
            "max_connections": self.max_connections,
        }


class Carrier(msgspec.Struct, gc=False):
    iata_code: Any = None
    name: Any = None


class Baggage(msgspec.Struct, gc=False):
    type: Any = None  # "checked", "carry_on"
    quantity: Any = None


class Condition(msgspec.Struct, gc=False):
    """A fare condition (refund or change before departure)."""

    allowed: Any = None
    penalty_amount: Any = None  # decimal string
    penalty_currency: Any = None


NO_CARRIER = Carrier()


class Segment(msgspec.Struct, gc=False):
    carrier: Carrier  # the marketing carrier
    operating_carrier: Carrier
    flight_number: str
    aircraft: str | None
    origin: str
    destination: str
    departing_at: str  # local time at the origin, ISO without offset
    arriving_at: str
    origin_time_zone: str | None
    destination_time_zone: str | None
    duration_minutes: int | None
    cabin_class: str | None = None
    baggage: list[Baggage] = []  # what the first passenger may take


class Slice(msgspec.Struct, gc=False):
    origin: str
    destination: str
    duration_minutes: int | None
    stops: int
    segments: list[Segment]
    fare_brand: str | None = None


class Offer(msgspec.Struct, gc=False):
    id: str
    total_amount: str  # decimal string, as the provider prices it
    total_currency: str
    base_amount: str | None
    tax_amount: str | None
    owner: Carrier
    slices: list[Slice]
    expires_at: str  # ISO datetime (UTC)
    refundable: bool | None = None
    changeable: bool | None = None
    conditions: dict[str, Condition | None] | None = None  # refund_before_departure, change_before_departure
    emissions_kg: str | None = None


encode_offer = msgspec.json.Encoder().encode


@dataclass
class SearchResult:
    offers: list[Offer]
    provider: str
    search_id: str = ""  # the provider's id for the search (Duffel's offer request id)


@dataclass
class Place:
    type: str  # "airport" or "city"
    iata_code: str
    name: str
    city_name: str | None = None
    country: str | None = None
    time_zone: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    airports: list = field(default_factory=list)  # for a city: its airports' IATA codes

    def as_dict(self):
        return asdict(self)


class FlightProvider(Protocol):
    name: str

    def search(self, query: SearchQuery, *, owner=None) -> SearchResult: ...

    def places(self, text: str, *, owner=None) -> list[Place]: ...

    def cache_scope(self) -> str: ...


def get_flight_provider(name="duffel") -> FlightProvider:
    if name == "duffel":
        from .duffel import DuffelProvider

        return DuffelProvider()
    raise LookupError(f"no flight provider {name!r}")
