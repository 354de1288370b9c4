"""Input and output shapes. Every rule here runs before any provider call: a
bad search is a 400 naming its field (`slices[1].origin`), and nothing is spent."""

import re
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from integrations.api.strict import StrictModelSerializer, StrictSerializer

from . import airports
from .models import PricePoint, PriceWatch
from .providers import DEFAULT_MAX_CONNECTIONS

CABIN_CLASSES = ["economy", "premium_economy", "business", "first"]
SORTS = ["price", "duration", "departure"]
MAX_SLICES = 6
MAX_PASSENGERS = 9
# Airlines sell about a year ahead; Duffel has nothing to offer past that.
MAX_DAYS_AHEAD = 365
_IATA_AIRLINE = re.compile(r"^[A-Z0-9]{2}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def flatten_errors(detail, prefix=""):
    """DRF's nested errors as {"slices[1].origin": ["..."]}: one name per bad field."""
    out = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                name = f"{prefix}[{key}]"  # a list's item (DRF keys them by index)
            elif key == "non_field_errors" and not prefix:
                name = key
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_errors(value, name))
    elif isinstance(detail, list) and detail and all(isinstance(d, (dict, list)) for d in detail):
        for i, value in enumerate(detail):
            if value:
                out.update(flatten_errors(value, f"{prefix}[{i}]"))
    else:
        out[prefix or "non_field_errors"] = [str(d) for d in (detail if isinstance(detail, list) else [detail])]
    return out


def _code(value, field):
    code = (value or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise serializers.ValidationError({field: f"{value!r} is not a 3-letter IATA airport or city code."})
    if not airports.is_known(code):
        raise serializers.ValidationError({field: f"{code} is not a known IATA airport or city code."})
    return code


def _airlines(values, field):
    codes = []
    for value in values or []:
        code = str(value).strip().upper()
        if not _IATA_AIRLINE.match(code):
            raise serializers.ValidationError({field: f"{value!r} is not a 2-character IATA airline code."})
        codes.append(code)
    return sorted(set(codes))


def _optional(field, **kwargs):
    """A field the client may leave out or send as null (then None)."""
    return field(required=False, allow_null=True, default=None, **kwargs)


def _price(help_text):
    """An optional amount in the offers' currency."""
    return _optional(serializers.DecimalField, max_digits=12, decimal_places=2, min_value=0, help_text=help_text)


def _route(data):
    """Normalise origin and destination to known IATA codes; they must not share an airport (LON and LHR do)."""
    data["origin"] = _code(data["origin"], "origin")
    data["destination"] = _code(data["destination"], "destination")
    if data["origin"] == data["destination"]:
        raise serializers.ValidationError({"destination": "The destination must differ from the origin."})
    shared = airports.airports_of(data["origin"]) & airports.airports_of(data["destination"])
    if shared:
        raise serializers.ValidationError(
            {
                "destination": f"The destination must differ from the origin: {data['origin']} and "
                f"{data['destination']} share the airport {', '.join(sorted(shared))}."
            }
        )


def _on_sale(day, origin, field="departure_date"):
    """A departure date airlines sell: not past at the origin (dates are local), at most MAX_DAYS_AHEAD ahead."""
    first = airports.local_today(origin, timezone.now())
    last = first + timedelta(days=MAX_DAYS_AHEAD)
    if day < first:
        raise serializers.ValidationError({field: "The departure date is in the past."})
    if day > last:
        raise serializers.ValidationError({field: f"Airlines sell at most {MAX_DAYS_AHEAD} days ahead (until {last})."})


class PassengersSerializer(StrictSerializer):
    adults = serializers.IntegerField(min_value=1, max_value=MAX_PASSENGERS, default=1)
    children = serializers.ListField(
        child=serializers.IntegerField(min_value=2, max_value=17),
        required=False,
        default=list,
        help_text="Each child's age on the day of travel (2-17); under 2 is an infant.",
    )
    infants = serializers.IntegerField(min_value=0, max_value=MAX_PASSENGERS, default=0)

    def validate(self, data):
        if data["infants"] > data["adults"]:
            raise serializers.ValidationError(
                {"infants": "Each infant travels on an adult's lap: no more infants than adults."}
            )
        total = data["adults"] + len(data["children"]) + data["infants"]
        if total > MAX_PASSENGERS:
            raise serializers.ValidationError(
                {"adults": f"At most {MAX_PASSENGERS} passengers in one search (this one has {total})."}
            )
        return data


class SliceSerializer(StrictSerializer):
    origin = serializers.CharField(max_length=8)
    destination = serializers.CharField(max_length=8)
    departure_date = serializers.DateField()
    departure_time_from = _optional(serializers.CharField, help_text="HH:MM, local")
    departure_time_to = _optional(serializers.CharField, help_text="HH:MM, local")

    def validate(self, data):
        _route(data)
        for name in ("departure_time_from", "departure_time_to"):
            if data[name] is not None and not _TIME.match(data[name]):
                raise serializers.ValidationError({name: "Use a 24-hour time such as 07:30."})
        if (
            data["departure_time_from"]
            and data["departure_time_to"]
            and data["departure_time_from"] > data["departure_time_to"]
        ):
            raise serializers.ValidationError({"departure_time_to": "The time window ends before it starts."})
        _on_sale(data["departure_date"], data["origin"])
        return data


class _OfferFilters(StrictSerializer):
    """Who travels and which offers count: the fields a search and a price watch share."""

    passengers = PassengersSerializer(required=False, default=dict)
    cabin_class = serializers.ChoiceField(choices=CABIN_CLASSES, default="economy")
    max_connections = _optional(
        serializers.IntegerField,
        min_value=0,
        max_value=2,
        help_text=f"Connections allowed in each slice: 0 for direct flights only. Omitted or null: "
        f"{DEFAULT_MAX_CONNECTIONS}, Duffel's own default.",
    )
    include_airlines = serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        default=list,
        max_length=50,
        help_text="IATA airline codes: only offers whose every flight is sold by one of them (the offer's owner or "
        "the flight's marketing carrier) or flown by one (its operating carrier); a codeshare counts for both.",
    )
    exclude_airlines = serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        default=list,
        max_length=50,
        help_text="IATA airline codes: no offer with a flight sold by one of them (the offer's owner or the "
        "flight's marketing carrier) or flown by one (its operating carrier).",
    )

    def filters_validate(self, data):
        if "passengers" not in self.initial_data:
            data["passengers"] = {"adults": 1, "children": [], "infants": 0}
        if data["max_connections"] is None:
            data["max_connections"] = DEFAULT_MAX_CONNECTIONS
        data["include_airlines"] = _airlines(data["include_airlines"], "include_airlines")
        data["exclude_airlines"] = _airlines(data["exclude_airlines"], "exclude_airlines")
        both = set(data["include_airlines"]) & set(data["exclude_airlines"])
        if both:
            raise serializers.ValidationError(
                {"exclude_airlines": f"{', '.join(sorted(both))} is both included and excluded."}
            )


class SearchRequestSerializer(_OfferFilters):
    slices = SliceSerializer(
        many=True, help_text="One slice for one-way, two for a return, up to six for multi-city; in travel order."
    )
    max_price = _price("In the offers' currency.")
    sort = serializers.ChoiceField(choices=SORTS, default="price")
    refresh = serializers.BooleanField(default=False, help_text="Skip the cache and ask the provider again.")
    limit = serializers.IntegerField(min_value=1, max_value=200, required=False)

    def validate_slices(self, slices):
        if not slices:
            raise serializers.ValidationError("Give at least one slice.")
        if len(slices) > MAX_SLICES:
            raise serializers.ValidationError(f"At most {MAX_SLICES} slices (multi-city).")
        return slices

    def validate(self, data):
        slices = data["slices"]
        for i in range(1, len(slices)):
            if slices[i]["departure_date"] < slices[i - 1]["departure_date"]:
                errors = [{} for _ in slices]
                errors[i] = {
                    "departure_date": ["Slices must be in travel order: this one departs before the previous one."]
                }
                raise serializers.ValidationError({"slices": errors})
        self.filters_validate(data)
        return data


class SearchPageQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(max_length=2000)


class _Carrier(StrictSerializer):
    iata_code = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)


class SegmentSerializer(StrictSerializer):
    carrier = _Carrier()
    operating_carrier = _Carrier()
    flight_number = serializers.CharField()
    aircraft = serializers.CharField(allow_null=True)
    origin = serializers.CharField()
    destination = serializers.CharField()
    departing_at = serializers.CharField(help_text="Local time at the origin (ISO 8601, no offset).")
    arriving_at = serializers.CharField(help_text="Local time at the destination.")
    origin_time_zone = serializers.CharField(allow_null=True)
    destination_time_zone = serializers.CharField(allow_null=True)
    duration_minutes = serializers.IntegerField(allow_null=True)
    cabin_class = serializers.CharField(allow_null=True)
    baggage = serializers.ListField(child=serializers.DictField())


class OfferSliceSerializer(StrictSerializer):
    origin = serializers.CharField()
    destination = serializers.CharField()
    duration_minutes = serializers.IntegerField(allow_null=True)
    stops = serializers.IntegerField()
    fare_brand = serializers.CharField(allow_null=True)
    segments = SegmentSerializer(many=True)


class OfferSerializer(StrictSerializer):
    id = serializers.CharField()
    total_amount = serializers.CharField()
    total_currency = serializers.CharField()
    base_amount = serializers.CharField(allow_null=True)
    tax_amount = serializers.CharField(allow_null=True)
    owner = _Carrier()
    slices = OfferSliceSerializer(many=True)
    expires_at = serializers.CharField()
    refundable = serializers.BooleanField(allow_null=True)
    changeable = serializers.BooleanField(allow_null=True)
    conditions = serializers.DictField(allow_null=True)
    emissions_kg = serializers.CharField(allow_null=True)


class _CacheInfo(StrictSerializer):
    hit = serializers.BooleanField()
    age_seconds = serializers.FloatField()


class SearchResponseSerializer(StrictSerializer):
    search_id = serializers.CharField()
    provider = serializers.CharField()
    cache = _CacheInfo()
    offer_count = serializers.IntegerField()
    offers = OfferSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Cursor for GET searches/{search_id}/?cursor=...")


class PlacesQuerySerializer(serializers.Serializer):
    q = serializers.CharField(min_length=2, max_length=60, trim_whitespace=True)


class PlaceSerializer(StrictSerializer):
    type = serializers.CharField()
    iata_code = serializers.CharField()
    name = serializers.CharField()
    city_name = serializers.CharField(allow_null=True)
    country = serializers.CharField(allow_null=True)
    time_zone = serializers.CharField(allow_null=True)
    latitude = serializers.FloatField(allow_null=True)
    longitude = serializers.FloatField(allow_null=True)
    airports = serializers.ListField(child=serializers.CharField())


class PlacesResponseSerializer(StrictSerializer):
    places = PlaceSerializer(many=True)
    cache = serializers.DictField()


# --- watches -------------------------------------------------------------------------


class WatchCreateSerializer(_OfferFilters):
    origin = serializers.CharField(max_length=8)
    destination = serializers.CharField(max_length=8)
    departure_date = serializers.DateField()
    departure_date_to = _optional(serializers.DateField, help_text="Watch every departure date up to this one.")
    return_date = _optional(serializers.DateField)
    nights = _optional(
        serializers.IntegerField,
        min_value=1,
        max_value=60,
        help_text="With a date range: return this many nights after each departure.",
    )
    target_price = _price("Notify when the price falls below this (offers' currency). Omit for any drop.")
    drop_percent = _optional(
        serializers.DecimalField,
        max_digits=5,
        decimal_places=2,
        min_value=1,
        max_value=90,
        help_text="Without a target: notify on a drop of this many percent (default TRAVEL_WATCH_DROP_PERCENT).",
    )

    def validate(self, data):
        _route(data)
        start, end = data["departure_date"], data["departure_date_to"]
        _on_sale(start, data["origin"])
        if end is not None:
            if end < start:
                raise serializers.ValidationError({"departure_date_to": "The range ends before it starts."})
            if (end - start).days + 1 > settings.TRAVEL_WATCH_MAX_RANGE_DAYS:
                raise serializers.ValidationError(
                    {"departure_date_to": f"Watch at most {settings.TRAVEL_WATCH_MAX_RANGE_DAYS} departure dates."}
                )
            if data["return_date"] is not None:
                raise serializers.ValidationError({"return_date": "With a date range, give `nights` instead."})
        elif data["nights"] is not None:
            raise serializers.ValidationError({"nights": "`nights` goes with a date range; give return_date instead."})
        if data["return_date"] is not None and data["return_date"] < start:
            raise serializers.ValidationError({"return_date": "The return date is before the departure date."})
        # Every date the watch will search must be one a search would accept (on sale).
        if end is not None:
            _on_sale(end, data["origin"], "departure_date_to")
            if data["nights"] is not None:
                _on_sale(end + timedelta(days=data["nights"]), data["destination"], "nights")
        if data["return_date"] is not None:
            _on_sale(data["return_date"], data["destination"], "return_date")
        self.filters_validate(data)
        if data["target_price"] is not None and data["drop_percent"] is not None:
            raise serializers.ValidationError({"drop_percent": "Give a target price or a drop percentage, not both."})
        return data


class PricePointSerializer(StrictModelSerializer):
    class Meta:
        model = PricePoint
        fields = ["checked_at", "departure_date", "price", "currency", "offer_id", "airline", "offer_count", "notified"]


class WatchSerializer(StrictModelSerializer):
    passengers = serializers.SerializerMethodField()
    notify_on = serializers.SerializerMethodField()

    class Meta:
        model = PriceWatch
        fields = [
            "id",
            "status",
            "origin",
            "destination",
            "departure_date",
            "departure_date_to",
            "return_date",
            "nights",
            "passengers",
            "cabin_class",
            "max_connections",
            "include_airlines",
            "exclude_airlines",
            "target_price",
            "drop_percent",
            "notify_on",
            "currency",
            "last_price",
            "reference_price",
            "last_checked_at",
            "next_check_at",
            "last_notified_at",
            "created_at",
        ]

    def get_passengers(self, watch) -> dict:
        return {"adults": watch.adults, "children": watch.child_ages, "infants": watch.infants}

    def get_notify_on(self, watch) -> str:
        return "below_target" if watch.target_price is not None else "any_drop"


class WatchDetailSerializer(WatchSerializer):
    history = serializers.SerializerMethodField()

    class Meta(WatchSerializer.Meta):
        fields = [*WatchSerializer.Meta.fields, "history"]

    def get_history(self, watch) -> dict:
        from .services.watches import watch_history

        return watch_history(watch=watch)
