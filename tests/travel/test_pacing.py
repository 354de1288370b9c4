"""Duffel's rate-limit headers pace the hub; a 429 is honoured until its reset; users are limited too."""

import email.utils
import time

import pytest

from integrations import limiter
from integrations.models import ProviderCall
from travel.providers.duffel import pace, reset_seconds

from .conftest import one_way, search

pytestmark = pytest.mark.django_db


def _posts(duffel):
    return len(duffel.calls("POST", "/air/offer_requests"))


def test_reset_is_read_as_an_http_date_an_epoch_or_seconds():
    now = 1_800_000_000.0
    assert reset_seconds(email.utils.formatdate(now + 42, usegmt=True), now=now) == pytest.approx(42, abs=1)
    assert reset_seconds(str(int(now + 30)), now=now) == pytest.approx(30)
    assert reset_seconds("17", now=now) == 17
    assert reset_seconds("2027-01-15T10:00:30Z", now=1_800_000_000.0) >= 0
    assert reset_seconds("", now=now) is None
    assert reset_seconds(email.utils.formatdate(now - 5, usegmt=True), now=now) == 0


def test_with_plenty_left_nothing_is_slowed(settings):
    assert (
        pace(
            "offer_requests",
            {
                "ratelimit-limit": "120",
                "ratelimit-remaining": "100",
                "ratelimit-reset": email.utils.formatdate(time.time() + 60, usegmt=True),
            },
        )
        is None
    )
    assert limiter.blocked_for("duffel", "offer_requests") == 0


def test_when_little_is_left_the_rest_is_spread_until_the_reset(settings):
    settings.DUFFEL_PACE_BELOW_FRACTION = 0.2
    wait = pace(
        "offer_requests",
        {
            "ratelimit-limit": "120",
            "ratelimit-remaining": "9",
            "ratelimit-reset": email.utils.formatdate(time.time() + 60, usegmt=True),
        },
    )
    assert wait == pytest.approx(6, abs=0.6)  # 60 s / (9 + 1)
    assert limiter.blocked_for("duffel", "offer_requests") == pytest.approx(wait, abs=0.6)


def test_a_search_that_used_the_last_request_of_the_window_blocks_the_next_until_the_reset(user_client, duffel):
    duffel.remaining = 1  # this answer says ratelimit-remaining: 0
    assert search(user_client, one_way()).status_code == 200
    r = search(user_client, one_way(days=31))
    assert r.status_code == 503
    assert r.json()["error"] == "rate_limited_outbound"
    assert 55 <= int(r["Retry-After"]) <= 61
    assert _posts(duffel) == 1  # the second search never left the hub


def test_a_nearly_spent_window_slows_searches_down(user_client, duffel):
    duffel.remaining = 6  # 5 of 120 left after this answer: one search per 60/6 = 10 s
    search(user_client, one_way())
    r = search(user_client, one_way(days=31))
    assert r.status_code == 503 and 9 <= int(r["Retry-After"]) <= 11


def test_a_429_is_honoured_until_its_reset(user_client, duffel):
    duffel.rate_limited_next(reset_in=30)
    r = search(user_client, one_way())
    assert r.status_code == 503
    assert r.json()["error"] == "provider_rate_limited"
    assert 29 <= int(r["Retry-After"]) <= 31
    call = ProviderCall.objects.get(provider="duffel")
    assert call.outcome == "rate_limited" and call.http_status == 429 and call.retryable is True
    r = search(user_client, one_way())
    assert r.status_code == 503 and r.json()["error"] == "rate_limited_outbound"
    assert _posts(duffel) == 1


def test_pacing_is_per_endpoint(user_client, duffel):
    duffel.rate_limited_next(reset_in=30)
    search(user_client, one_way())
    r = user_client.get("/api/v1/travel/places/", {"q": "london"})
    assert r.status_code == 200


def test_each_user_has_an_inbound_search_limit(user_client, client_for, other_user, duffel, settings, still_clock):
    settings.TRAVEL_SEARCH_USER_RATE = "3/m"
    codes = [search(user_client, one_way()).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    last = search(user_client, one_way())
    assert last.json()["error"] == "rate_limited" and int(last["Retry-After"]) >= 1
    assert search(client_for(other_user), one_way()).status_code == 200
