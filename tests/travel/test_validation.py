"""Bad searches are a 400 naming the field, before any call to Duffel."""

import pytest

from travel import airports

from .conftest import day, one_way, search

pytestmark = pytest.mark.django_db


def _slices(*specs):
    return [{"origin": o, "destination": d, "departure_date": day(n)} for o, d, n in specs]


BAD = [
    ({"slices": _slices(("LHR", "XQZ", 30))}, "slices[0].destination", "not a known IATA"),
    ({"slices": _slices(("LONDON", "JFK", 30))}, "slices[0].origin", "3-letter"),
    ({"slices": _slices(("LHR", "LHR", 30))}, "slices[0].destination", "differ"),
    # A city and one of its own airports: no flight between them, and no search spent to learn it.
    ({"slices": _slices(("LON", "LHR", 30))}, "slices[0].destination", "share the airport LHR"),
    ({"slices": _slices(("JFK", "NYC", 30))}, "slices[0].destination", "share the airport JFK"),
    ({"slices": _slices(("LHR", "JFK", -1))}, "slices[0].departure_date", "past"),
    ({"slices": _slices(("LHR", "JFK", 400))}, "slices[0].departure_date", "365 days"),
    ({"slices": _slices(("LHR", "JFK", 30), ("JFK", "LHR", 20))}, "slices[1].departure_date", "travel order"),
    ({"slices": _slices(*[("LHR", "JFK", 30)] * 7)}, "slices", "At most 6"),
    ({"slices": []}, "slices", "at least one"),
    (
        {"slices": [{"origin": "LHR", "destination": "JFK", "departure_date": "2027-02-30"}]},
        "slices[0].departure_date",
        "format",
    ),
    (
        {
            "slices": [
                {"origin": "LHR", "destination": "JFK", "departure_date": day(30), "departure_time_from": "25:00"}
            ]
        },
        "slices[0].departure_time_from",
        "24-hour",
    ),
    (
        {
            "slices": [
                {
                    "origin": "LHR",
                    "destination": "JFK",
                    "departure_date": day(30),
                    "departure_time_from": "18:00",
                    "departure_time_to": "08:00",
                }
            ]
        },
        "slices[0].departure_time_to",
        "ends before",
    ),
    (one_way(passengers={"adults": 1, "infants": 2}), "passengers.infants", "no more infants than adults"),
    (one_way(passengers={"adults": 5, "children": [4, 6, 8, 10, 12]}), "passengers.adults", "At most 9"),
    (one_way(passengers={"adults": 0}), "passengers.adults", "greater than or equal to 1"),
    (one_way(passengers={"adults": 1, "children": [1]}), "passengers.children[0]", "greater than or equal to 2"),
    (one_way(cabin_class="steerage"), "cabin_class", "not a valid choice"),
    (one_way(max_connections=5), "max_connections", "less than or equal to 2"),
    (one_way(include_airlines=["British"]), "include_airlines", "2-character"),
    (one_way(include_airlines=["BA"], exclude_airlines=["BA"]), "exclude_airlines", "both included and excluded"),
    (one_way(max_price="-1"), "max_price", "greater than or equal to 0"),
    (one_way(sort="cheapest"), "sort", "not a valid choice"),
    (one_way(limit=500), "limit", "less than or equal to 200"),
]


@pytest.mark.parametrize("body,field,words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_a_bad_search_is_a_400_naming_the_field_and_reaches_no_provider(user_client, duffel, body, field, words):
    r = search(user_client, body)
    assert r.status_code == 400, r.json()
    data = r.json()
    assert data["error"] == "invalid"
    assert field in data["fields"], data
    assert words in " ".join(data["fields"][field])
    assert field in data["detail"]
    assert duffel.requests == []


def test_city_codes_are_accepted_as_well_as_airports(user_client, duffel):
    r = search(user_client, one_way(origin="lon", destination="NYC"))
    assert r.status_code == 200
    sent = duffel.calls("POST", "/air/offer_requests")[0][3]["data"]["slices"][0]
    assert (sent["origin"], sent["destination"]) == ("LON", "NYC")


def test_the_local_code_list_knows_airports_and_metropolitan_areas():
    assert airports.is_known("LHR") and airports.is_known("LON") and airports.is_known("TYO")
    assert not airports.is_known("XQZ")
    assert {"LHR", "LGW"} <= airports.airports_of("LON")
    assert airports.describe("JFK")["time_zone"] == "America/New_York"


@pytest.mark.parametrize(
    "name,value",
    [
        ("DUFFEL_COST_PER_SEARCH_USD", "five cents"),
        ("DUFFEL_COST_PER_SEARCH_USD", "-1"),
        ("TRAVEL_SEARCH_USER_RATE", "ten a minute"),
        ("DUFFEL_OFFERS_PAGE_SIZE", "500"),
    ],
)
def test_a_malformed_setting_stops_start_up_naming_it(name, value, monkeypatch):
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    import config.settings.travel as travel_settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        importlib.reload(travel_settings)
    monkeypatch.delenv(name)
    importlib.reload(travel_settings)


def test_the_cost_per_search_setting_prices_each_offer_request(monkeypatch):
    import importlib

    import config.settings.travel as travel_settings
    from config.settings._env import TABLE_DEFAULTS

    monkeypatch.setenv("DUFFEL_COST_PER_SEARCH_USD", "0.005")
    importlib.reload(travel_settings)
    try:
        prices = TABLE_DEFAULTS["PROVIDER_PRICES"]["duffel"]
        assert prices["offer_request.create"] == {"per_call": "0.005"}
        assert prices["*"] == {"per_call": "0"}  # listing offers and places are not searches
    finally:
        monkeypatch.delenv("DUFFEL_COST_PER_SEARCH_USD")
        importlib.reload(travel_settings)
