import factory

from tests.testapp.models import Shipment


class ShipmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Shipment
