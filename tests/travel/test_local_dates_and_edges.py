"""Departure dates are local to the origin; a watch stopped mid-check stays quiet; watch dates on sale; tampered cursors."""

import base64
import datetime as dt
import json
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.test import TestCase

from integrations.models import Alert
from travel import services
from travel.models import PriceWatch
from travel.services import watches as watch_service

from .conftest import day, one_way, search
from .duffel_fake import make_offer
from .factories import WatchFactory

pytestmark = pytest.mark.django_db

# 03:00 UTC on 4 December is 19:00 on 3 December in Los Angeles, and 12:00 on 4 December in Tokyo.
EVENING_IN_LA = "2026-12-04 03:00:00+00:00"
# 23:00 UTC on 4 December is already 08:00 on 5 December in Tokyo.
MORNING_IN_TOKYO = "2026-12-04 23:00:00+00:00"


# --- 1. "in the past" is judged by the UTC date, not the origin's local date -----------------------


def test_tonights_flight_from_los_angeles_can_be_searched_after_utc_midnight(user_client, duffel):
    with time_machine.travel(EVENING_IN_LA):
        r = search(
            user_client,
            {"slices": [{"origin": "LAX", "destination": "JFK", "departure_date": "2026-12-03"}]},
        )
    # It is 19:00 on 3 December at LAX: the red-eyes of the evening are still on sale.
    assert r.status_code == 200, r.json()


def test_a_departure_date_already_past_at_the_origin_is_a_400_before_any_provider_call(user_client, duffel):
    with time_machine.travel(MORNING_IN_TOKYO):
        r = search(
            user_client,
            {"slices": [{"origin": "HND", "destination": "LHR", "departure_date": "2026-12-04"}]},
        )
    # 4 December is over in Tokyo: a search for it can only spend a Duffel search for nothing.
    assert r.status_code == 400 and "slices[0].departure_date" in r.json()["fields"], r.json()
    assert duffel.requests == []


def test_a_watch_on_tonights_flight_from_los_angeles_is_not_expired_at_utc_midnight(duffel):
    with time_machine.travel(EVENING_IN_LA):
        watch = WatchFactory(origin="LAX", destination="JFK", departure_date=dt.date(2026, 12, 3))
        services.watch_check_due()
        watch.refresh_from_db()
        assert watch.status == PriceWatch.Status.ACTIVE
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert services.watch_check(watch_id=watch.pk) == "recorded"


# --- 2. a watch accepts dates a search refuses (past the sale window) ---------------------------------


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"departure_date": day(30), "return_date": day(400)}, "return_date"),
        ({"departure_date": day(360), "departure_date_to": day(370)}, "departure_date_to"),
        ({"departure_date": day(355), "departure_date_to": day(360), "nights": 30}, "nights"),
    ],
)
def test_a_watch_on_dates_no_airline_sells_is_a_400(user_client, duffel, extra, field):
    body = {"origin": "LHR", "destination": "JFK", **extra}
    r = user_client.post("/api/v1/travel/watches/", body, format="json")
    # The same trip as a search is a 400 ("Airlines sell at most 365 days ahead"); as a watch it was
    # accepted and then searched every six hours for a price that can never come.
    assert r.status_code == 400 and field in r.json()["fields"], r.json()
    assert not PriceWatch.objects.exists()


# --- 3. a watch cancelled while its search runs still notifies the owner ---------------------------------


def test_a_watch_cancelled_during_its_check_does_not_notify(user, duffel, eager, monkeypatch):
    watch = WatchFactory(owner=user, target_price=Decimal("400.00"))
    duffel.offers_for = lambda slices: [make_offer(slices, offer_id="off_1", total="380.00")]
    real_fetch = watch_service._fetch

    def fetch_then_owner_cancels(*args, **kwargs):
        answer = real_fetch(*args, **kwargs)
        services.watch_cancel(user=user, watch_id=watch.pk)  # the owner presses "stop watching" meanwhile
        return answer

    monkeypatch.setattr(watch_service, "_fetch", fetch_then_owner_cancels)
    with TestCase.captureOnCommitCallbacks(execute=True):
        services.watch_check(watch_id=watch.pk)
    watch.refresh_from_db()
    assert watch.status == "cancelled"
    assert mail.outbox == [], "an email about a watch the owner had cancelled"
    assert not Alert.objects.filter(kind=Alert.Kind.PRICE_DROP).exists()


# --- 4. a tampered cursor is a 500, not the 400 a made-up cursor gets ------------------------------------------


def _cursor(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "data",
    [
        {"o": 0, "l": "ten", "f": {}},
        {"o": 0, "l": 1, "f": {"include_airlines": 5}},
        {"o": 0, "l": 1, "f": {"max_price": 10**400}},  # a JSON integer no float can hold
        {"o": 0, "l": 1, "f": {}, "c": "yesterday"},
    ],
)
def test_a_cursor_of_the_right_shape_with_bad_values_is_a_400(user_client, duffel, data):
    first = search(user_client, one_way(limit=1)).json()
    user_client.raise_request_exception = False
    r = user_client.get(f"/api/v1/travel/searches/{first['search_id']}/", {"cursor": _cursor(data)})
    assert r.status_code == 400, r.status_code
    assert r.json()["field"] == "cursor"
