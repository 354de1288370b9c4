"""Place suggestions from Duffel, cached for a day."""

import pytest

from integrations.models import ProviderCall

pytestmark = pytest.mark.django_db


def places(client, q):
    return client.get("/api/v1/travel/places/", {"q": q})


def test_places_are_suggested_and_normalised(user_client, duffel):
    r = places(user_client, "London")
    assert r.status_code == 200
    data = r.json()
    assert data["cache"] == {"hit": False}
    city = next(p for p in data["places"] if p["type"] == "city")
    assert city["iata_code"] == "LON" and city["airports"] == ["LHR", "LGW"]
    airport = next(p for p in data["places"] if p["type"] == "airport")
    assert airport == {
        "type": "airport",
        "iata_code": "LHR",
        "name": "Heathrow Airport",
        "city_name": "London",
        "country": "GB",
        "time_zone": "Europe/London",
        "latitude": 51.47,
        "longitude": -0.4543,
        "airports": [],
    }
    (call,) = duffel.calls("GET", "/places/suggestions")
    assert call[2] == {"name": "London"}
    assert ProviderCall.objects.get(provider="duffel").operation == "places.suggest"


def test_the_same_text_is_answered_from_the_cache(user_client, duffel):
    places(user_client, "London")
    r = places(user_client, "  london ")
    assert r.json()["cache"] == {"hit": True}
    assert len(duffel.calls("GET", "/places/suggestions")) == 1


@pytest.mark.redis
def test_suggestions_are_kept_for_a_day(user_client, duffel):
    from django.core.cache import cache

    from integrations.redis import get_client
    from travel.services.places import _key

    places(user_client, "London")
    assert 86000 <= get_client().ttl(cache.make_key(_key("London"))) <= 86400


@pytest.mark.parametrize("q", ["", "a", "x" * 61])
def test_a_query_too_short_or_long_is_a_400(user_client, duffel, q):
    r = places(user_client, q)
    assert r.status_code == 400 and "q" in r.json()["fields"]
    assert duffel.requests == []
