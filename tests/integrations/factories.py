import factory
from django.utils import timezone

from integrations.models import Alert, AlertDelivery, Connection, WebhookEvent
from tests.factories import UserFactory


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


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connection

    owner = factory.SubFactory(UserFactory)
    provider = "google_oauth"
    account = factory.Sequence(lambda n: f"person{n}@example.com")
    scopes = factory.LazyFunction(lambda: ["https://www.googleapis.com/auth/gmail.readonly"])
    access_token = factory.Sequence(lambda n: f"ya29.access-token-{n}")
    refresh_token = factory.Sequence(lambda n: f"1//refresh-token-{n}")


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    kind = Alert.Kind.OPERATIONS
    severity = Alert.Severity.CRITICAL
    message = "queue depth 500 on payments"
    dedupe_key = factory.Sequence(lambda n: f"operations:test:{n}")


class AlertDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertDelivery

    alert = factory.SubFactory(AlertFactory)
    channel_key = "settings:email"
    notice = AlertDelivery.Notice.OPENED
