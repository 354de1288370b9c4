"""Flights (Duffel): search, cache, pacing, price watches."""

from django.core.exceptions import ImproperlyConfigured

from ._env import env, provider_defaults
from .base import LOGGING, SPECTACULAR_SETTINGS
from .celery import CELERY_BEAT_SCHEDULE

# --- Duffel (travel.providers.duffel) ----------------------------------------
# A test or live access token from Duffel's dashboard (Developers > Access tokens).
DUFFEL_ACCESS_TOKEN = env.str("DUFFEL_ACCESS_TOKEN", default="")
# Point at a local fake or a recording proxy in tests and benchmarks.
DUFFEL_API_BASE = env.str("DUFFEL_API_BASE", default="https://api.duffel.com").rstrip("/")
# Every request names the API version (`Duffel-Version`); v2 is the current one.
DUFFEL_API_VERSION = env.str("DUFFEL_API_VERSION", default="v2")
# How long Duffel waits for airlines before answering with what it has (ms, Duffel allows 2000-60000).
DUFFEL_SUPPLIER_TIMEOUT_MS = env.int("DUFFEL_SUPPLIER_TIMEOUT_MS", default=20000)
# 0: offers come inline in the offer request's answer (`return_offers=true`). N > 0: the offer
# request is created without offers and they are read N at a time from /air/offers, following
# `meta.after`, which keeps each answer small on routes with thousands of offers.
DUFFEL_OFFERS_PAGE_SIZE = env.int("DUFFEL_OFFERS_PAGE_SIZE", default=0)
if not 0 <= DUFFEL_OFFERS_PAGE_SIZE <= 200:
    raise ImproperlyConfigured("DUFFEL_OFFERS_PAGE_SIZE must be between 0 and 200 (Duffel's page limit)")
# Duffel bills no fee per search while an account stays within its search-to-book ratio
# (1,500 searches per booked order); searches beyond it are billed as excess searches
# (duffel.com/pricing). Set your effective price per search to see it on each ProviderCall.
DUFFEL_COST_PER_SEARCH_USD = env.str("DUFFEL_COST_PER_SEARCH_USD", default="0")
# When fewer than this share of the window's requests remain (`ratelimit-remaining` /
# `ratelimit-limit`), the hub spreads the rest evenly until `ratelimit-reset`.
DUFFEL_PACE_BELOW_FRACTION = env.float("DUFFEL_PACE_BELOW_FRACTION", default=0.2)

provider_defaults(
    # Duffel limits requests per endpoint (scopes here: offer_requests, offers, places); the
    # static bucket is a floor under the pacing its rate-limit headers drive.
    RATE_LIMITS={"duffel": {"requests": {"rate": 2, "burst": 5}}},
    # Duffel waits up to the supplier timeout for airlines, then answers.
    PROVIDER_TIMEOUTS={"duffel": {"web": DUFFEL_SUPPLIER_TIMEOUT_MS / 1000 + 5, "task": 60.0}},
    PROVIDER_PRICES={
        "duffel": {
            "offer_request.create": {"per_call": DUFFEL_COST_PER_SEARCH_USD},
            "*": {"per_call": "0"},
        }
    },
)

# --- Search API (travel.services) ----------------------------------------------
# Identical searches are answered from Redis this long, never past an offer's expires_at.
TRAVEL_CACHE_TTL_SECONDS = env.int("TRAVEL_CACHE_TTL_SECONDS", default=3600)
# Place suggestions change rarely: a day.
TRAVEL_PLACES_CACHE_TTL_SECONDS = env.int("TRAVEL_PLACES_CACHE_TTL_SECONDS", default=86400)
# Concurrent identical searches wait this long for the one provider call in flight.
TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS = env.float("TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS", default=30.0)
# Offers kept per search (cheapest first); a page of the API answer holds TRAVEL_PAGE_SIZE.
TRAVEL_MAX_OFFERS = env.int("TRAVEL_MAX_OFFERS", default=1000)
TRAVEL_PAGE_SIZE = env.int("TRAVEL_PAGE_SIZE", default=50)
# Inbound limit per user on searches and place suggestions (django-ratelimit rate).
TRAVEL_SEARCH_USER_RATE = env.str("TRAVEL_SEARCH_USER_RATE", default="10/m")
TRAVEL_PLACES_USER_RATE = env.str("TRAVEL_PLACES_USER_RATE", default="60/m")

# --- Price watches -------------------------------------------------------------------
# Each active watch is searched again this often, at its own minute of the hour.
TRAVEL_WATCH_INTERVAL_MINUTES = env.int("TRAVEL_WATCH_INTERVAL_MINUTES", default=360)
# The search budget watches may spend; due watches beyond it wait for the next minute.
TRAVEL_WATCH_MAX_SEARCHES_PER_HOUR = env.int("TRAVEL_WATCH_MAX_SEARCHES_PER_HOUR", default=120)
# "Any drop" watches notify when the price falls this many percent below the last price told.
TRAVEL_WATCH_DROP_PERCENT = env.float("TRAVEL_WATCH_DROP_PERCENT", default=5.0)
# A watch check accepts a cached search of the same trip no older than this (someone else's, just now).
TRAVEL_WATCH_MAX_CACHE_AGE_SECONDS = env.int("TRAVEL_WATCH_MAX_CACHE_AGE_SECONDS", default=600)
TRAVEL_WATCH_MAX_RANGE_DAYS = env.int("TRAVEL_WATCH_MAX_RANGE_DAYS", default=14)
TRAVEL_WATCH_MAX_PER_USER = env.int("TRAVEL_WATCH_MAX_PER_USER", default=20)
# The sweeper runs every minute and enqueues the watches that are due (within the budget).
CELERY_BEAT_SCHEDULE["travel.watch_check_due"] = {"task": "travel.watch_check_due", "schedule": 60.0}
LOGGING["filters"]["routine_tasks"]["tasks"].append("travel.watch_check_due")  # every minute: DEBUG, not INFO

# The OpenAPI schema names the watch states' enum (every model has a `status`).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["PriceWatchStatusEnum"] = "travel.models.PriceWatch.Status"
