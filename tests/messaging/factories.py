import factory

from messaging.models import CallLog, ForwardingRule, SmsMessage
from tests.factories import UserFactory


class SmsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SmsMessage

    owner = factory.SubFactory(UserFactory)
    to_number = "+15005550006"
    from_number = "+14155550100"
    body = "Your table is ready."
    segments = 1


class CallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CallLog

    owner = factory.SubFactory(UserFactory)
    direction = "outbound"
    from_number = "+14155550100"
    to_number = "+15005550006"
    say = "Hello"


class ForwardingRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ForwardingRule

    name = factory.Sequence(lambda n: f"rule {n}")
    target_number = "+14155550111"
    ring_timeout = 20
