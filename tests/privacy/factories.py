import datetime as dt

import factory
from django.utils import timezone

from privacy.models import Erasure, Export
from tests.factories import UserFactory


class ExportFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Export

    owner = factory.SubFactory(UserFactory)
    requested_by = factory.SelfAttribute("owner")
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=7))


class ErasureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Erasure

    subject_id = factory.Sequence(lambda n: 10_000 + n)
    pseudonym = factory.Sequence(lambda n: f"erased-test{n:06d}")
    scheduled_for = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=7))
