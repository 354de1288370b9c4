"""The follow-up sweep when a kept follow-up cannot be sent (a task renamed or given new arguments by a deploy):
the event's other follow-ups are not sent again on every sweep, and the beat still sends the other events' and
still drains stale webhook events."""

import datetime as dt

import pytest
import time_machine
from celery import shared_task
from django.utils import timezone

from integrations.models import WebhookEvent
from integrations.webhooks import InboundEvent, record_webhook
from integrations.webhooks.tasks import webhook_requeue_stale_task
from tests.integrations.outbox_kit import eager_tasks
from tests.testapp.models import Shipment

pytestmark = pytest.mark.django_db


@shared_task(name="tests.webhook_follow_up_edge_note", ignore_result=True)
def note(label):
    """A follow-up that leaves a row named `label` each time it runs."""
    Shipment.objects.create(external_id=label, state="sent")


def processed_with(event_id, follow_ups):
    """A processed event whose follow-ups the broker never took (the worker died after the commit)."""
    inbound = InboundEvent(event_id=event_id, type="thing.updated", payload={"id": event_id})
    event = record_webhook(provider="hubtest", inbound=inbound)[0]
    WebhookEvent.objects.filter(pk=event.pk).update(
        status="processed", processed_at=timezone.now(), follow_ups=follow_ups, follow_ups_due_at=timezone.now()
    )
    return event


def beat_after(seconds):
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=seconds)), eager_tasks():
        webhook_requeue_stale_task.apply()


def ran():
    return sorted(Shipment.objects.values_list("external_id", flat=True))


def test_a_follow_up_naming_no_task_does_not_send_its_events_other_follow_ups_on_every_sweep(settings):
    processed_with("evt_renamed", [[note.name, ["first"], {}], ["tests.no_such_task", [1], {}]])

    beat_after(1)
    beat_after(settings.OUTBOX_BACKOFF_MAX_SECONDS + 1)
    beat_after(2 * settings.OUTBOX_BACKOFF_MAX_SECONDS + 2)

    assert ran() == []  # nothing of the event goes until all of it can, rather than its first part again and again
    assert WebhookEvent.objects.get(event_id="evt_renamed").follow_ups_due_at is not None


def test_a_follow_up_its_task_no_longer_takes_does_not_stop_the_sweep_or_the_stale_requeue(settings):
    processed_with("evt_old_args", [[note.name, ["a", "b"], {}]])
    processed_with("evt_fine", [[note.name, ["fine"], {}]])
    stale = record_webhook(
        provider="hubtest", inbound=InboundEvent(event_id="evt_stale", type="thing.updated", payload={})
    )[0]
    WebhookEvent.objects.filter(pk=stale.pk).update(
        received_at=timezone.now() - dt.timedelta(seconds=settings.WEBHOOK_REQUEUE_AFTER_SECONDS + 60)
    )

    beat_after(1)

    assert "fine" in ran()
    assert WebhookEvent.objects.get(event_id="evt_fine").follow_ups == []
    # The stale event was stamped for its drain: the beat went on past the follow-up it could not send.
    assert WebhookEvent.objects.get(event_id="evt_stale").next_attempt_at is not None
