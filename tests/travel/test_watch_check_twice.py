"""Two deliveries of one watch check running at once record one price, not two."""

import datetime as dt

import pytest

from travel import services
from travel.models import PricePoint, PriceWatch
from travel.services import watches as watches_service

from .factories import WatchFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager")]


def test_a_second_delivery_that_passed_the_guard_while_the_first_searched_records_nothing(duffel, monkeypatch):
    start = dt.date.today() + dt.timedelta(days=20)
    watch = WatchFactory(departure_date=start, departure_date_to=start + dt.timedelta(days=3), nights=7)
    real_fetch, calls = watches_service._fetch, []

    def fetch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            # The same task delivered twice: the other delivery passed the guard too and finishes first.
            assert services.watch_check(watch_id=watch.pk) != "skipped"
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(watches_service, "_fetch", fetch)
    services.watch_check(watch_id=watch.pk)
    watch.refresh_from_db()
    assert PricePoint.objects.filter(watch=watch).count() == 1
    assert watch.next_date_index == 1  # the next check searches the range's second date, not its third
    assert PriceWatch.objects.get(pk=watch.pk).status == "active"
