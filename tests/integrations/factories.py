import factory
from django.utils import timezone

from integrations.models import WebhookEvent


class WebhookEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    provider = "hubtest"
    event_id = factory.Sequence(lambda n: f"evt_{n:06d}")
    type = "thing.updated"
    payload = factory.LazyAttribute(lambda e: {"id": e.event_id, "type": e.type, "data": {"n": 1}})
    headers = factory.LazyFunction(lambda: {"Content-Type": "application/json"})
    signature_verified = True
    next_attempt_at = factory.LazyFunction(timezone.now)

