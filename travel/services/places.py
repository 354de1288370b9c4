"""Place suggestions (airports and cities by name), cached for a day per query text."""

import hashlib

from django.conf import settings
from django.core.cache import cache

from integrations.registry import require

from ..providers import get_flight_provider


def _key(text):
    return "travel:places:v1:" + hashlib.sha256(text.casefold().encode()).hexdigest()[:32]


def places_suggest(*, user, text):
    """{"places": [...], "cache": {"hit": bool}}; one provider call per distinct text per day."""
    require("duffel")
    text = " ".join(text.split())
    key = _key(text)
    hit = cache.get(key)
    if hit is not None:
        return {"places": hit, "cache": {"hit": True}}
    places = [p.as_dict() for p in get_flight_provider().places(text, owner=user)]
    cache.set(key, places, settings.TRAVEL_PLACES_CACHE_TTL_SECONDS)
    return {"places": places, "cache": {"hit": False}}
