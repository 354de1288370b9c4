import datetime as dt

import factory
from django.utils import timezone

from tests.factories import UserFactory
from travel.models import PriceWatch


class WatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PriceWatch

    owner = factory.SubFactory(UserFactory)
    origin = "LHR"
    destination = "JFK"
    departure_date = factory.LazyFunction(lambda: dt.date.today() + dt.timedelta(days=30))
    next_check_at = factory.LazyFunction(timezone.now)
