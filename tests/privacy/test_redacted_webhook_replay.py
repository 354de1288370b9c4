"""Replaying a webhook event whose payload an erasure redacted is refused, as one whose payload retention removed:
its handler could only fail and retry, holding back every newer event of its object meanwhile."""

import pytest

from integrations.models import WebhookEvent
from integrations.webhooks import InboundEvent, record_webhook
from integrations.webhooks.processing import WebhookReplayRefused, webhook_replay
from privacy.erasure import webhooks_redact

pytestmark = pytest.mark.django_db


def test_an_event_redacted_by_an_erasure_cannot_be_replayed():
    inbound = InboundEvent(event_id="evt_erased", type="thing.updated", payload={"customer": "cus_ErasedUser1"})
    event = record_webhook(provider="hubtest", inbound=inbound)[0]
    WebhookEvent.objects.filter(pk=event.pk).update(status="processed")
    assert webhooks_redact(refs=["cus_ErasedUser1"], pseudonym="erased-7") == 1
    event.refresh_from_db()

    with pytest.raises(WebhookReplayRefused):
        webhook_replay(event=event)

    assert WebhookEvent.objects.get(pk=event.pk).status == "processed"
