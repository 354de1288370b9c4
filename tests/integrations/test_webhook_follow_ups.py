"""The inbox keeps what a handler queued until the broker has it: after a worker dies between the drain's commit
and its publish, the beat sends exactly the tasks of handlers that succeeded, never those of a rolled-back
savepoint or a failed handler."""

import datetime as dt

import pytest
import time_machine
from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations.models import WebhookEvent
from integrations.task_base import enqueue_on_commit
from integrations.webhooks import InboundEvent, WebhookPermanentError, record_webhook, webhook_drain
from integrations.webhooks.registry import HANDLERS
from integrations.webhooks.tasks import webhook_requeue_stale_task
from tests.integrations.outbox_kit import eager_tasks
from tests.testapp.models import Shipment

pytestmark = pytest.mark.django_db


@shared_task(name="tests.webhook_follow_up_note", ignore_result=True)
def note(label):
    """A follow-up with no outbox row of its own: it leaves a row named `label` when it runs."""
    Shipment.objects.create(external_id=label, state="sent")


class Undone(Exception):
    pass


@pytest.fixture(autouse=True)
def handler(monkeypatch):
    def handle(event):
        name = event.event_id
        enqueue_on_commit(note, f"{name}:kept")
        try:
            with transaction.atomic():
                enqueue_on_commit(note, f"{name}:undone")
                raise Undone  # a step the handler tried and took back: its message goes with it
        except Undone:
            pass
        if event.payload.get("fail"):
            enqueue_on_commit(note, f"{name}:failed")
            raise WebhookPermanentError("cannot apply it")

    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handle)


def store(event_id, **payload):
    inbound = InboundEvent(event_id=event_id, type="thing.updated", payload={"id": event_id, **payload})
    return record_webhook(provider="hubtest", inbound=inbound)[0]


def ran():
    return sorted(Shipment.objects.values_list("external_id", flat=True))


def beat_after(seconds):
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=seconds)), eager_tasks():
        webhook_requeue_stale_task.apply()


def test_after_a_crash_between_commit_and_publish_the_beat_sends_what_the_successful_handlers_kept(
    django_capture_on_commit_callbacks, settings
):
    store("evt_ok")
    store("evt_bad", fail=True)
    with django_capture_on_commit_callbacks(execute=False):  # committed; the worker dies before publishing
        assert webhook_drain(provider="hubtest").claimed == 2
    assert dict(WebhookEvent.objects.values_list("event_id", "status")) == {"evt_ok": "processed", "evt_bad": "failed"}
    assert ran() == []

    beat_after(settings.OUTBOX_GRACE_SECONDS + 1)

    assert ran() == ["evt_ok:kept"]
    beat_after(settings.OUTBOX_GRACE_SECONDS * 4)
    assert ran() == ["evt_ok:kept"]


def test_each_event_of_the_batch_keeps_its_own_follow_ups(django_capture_on_commit_callbacks, settings):
    """The batch writes every event's follow-ups in one statement: each row gets its own, none another's."""
    for name in ("evt_a", "evt_b", "evt_c"):
        store(name)
    with django_capture_on_commit_callbacks(execute=False):
        assert webhook_drain(provider="hubtest").claimed == 3
    kept = dict(WebhookEvent.objects.values_list("event_id", "follow_ups"))
    assert kept == {name: [["tests.webhook_follow_up_note", [f"{name}:kept"], {}]] for name in kept}

    beat_after(settings.OUTBOX_GRACE_SECONDS + 1)

    assert ran() == ["evt_a:kept", "evt_b:kept", "evt_c:kept"]


def test_published_follow_ups_are_not_sent_again_beside_the_lost_ones(django_capture_on_commit_callbacks, settings):
    store("evt_sent")
    with eager_tasks(), django_capture_on_commit_callbacks(execute=True):
        webhook_drain(provider="hubtest")
    assert ran() == ["evt_sent:kept"]
    store("evt_lost")
    with django_capture_on_commit_callbacks(execute=False):
        webhook_drain(provider="hubtest")

    beat_after(settings.OUTBOX_GRACE_SECONDS + 1)

    assert ran() == ["evt_lost:kept", "evt_sent:kept"]
