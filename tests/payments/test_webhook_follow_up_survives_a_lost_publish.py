"""A webhook handler's follow-up task (Stripe payment_failed -> the owner's notice) is never lost between the
drain's commit and its publish: a worker that dies there, or a broker that refuses the message, leaves the
follow-up on the event for the beat sweeper, and a follow-up the broker took is not sent again."""

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from integrations.models import WebhookEvent
from integrations.webhooks.processing import webhook_drain
from integrations.webhooks.tasks import webhook_requeue_stale_task
from tests.integrations.outbox_kit import broker_down, eager_tasks

from . import stripe_fakes as fakes
from .factories import InvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db

URL = "/webhooks/stripe/"


@pytest.fixture
def payment(user):
    return PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id="pi_follow1")


@pytest.fixture
def failed_event_stored(client, payment, django_capture_on_commit_callbacks):
    """Stripe delivers payment_intent.payment_failed; the inbox stores it (its drain message is not run here)."""
    evt = fakes.event("payment_intent.payment_failed", fakes.intent(payment, error=fakes.decline_error()))
    body = fakes.body_of(evt)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=fakes.sign(body))
    assert response.status_code == 200, response.content
    return WebhookEvent.objects.get(provider="stripe")


def beat_after(seconds):
    """The beat's webhook sweeper, `seconds` from now, its tasks run as a worker would run them."""
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=seconds)), eager_tasks():
        webhook_requeue_stale_task.apply()


def notices(user):
    return [m for m in mail.outbox if m.to == [user.email] and "Payment failed" in m.subject]


class TestTheWorkerDiesBetweenTheDrainsCommitAndThePublish:
    def test_the_sweeper_sends_the_notice_the_dead_worker_never_published(
        self, failed_event_stored, payment, user, django_capture_on_commit_callbacks, settings
    ):
        # The drain commits (the payment is failed, the event processed), then its process dies before the
        # after-commit publish runs: the captured callbacks are never executed.
        with django_capture_on_commit_callbacks(execute=False) as never_published:
            assert webhook_drain(provider="stripe").claimed == 1
        assert never_published  # the notice was only promised to the broker
        payment.refresh_from_db()
        failed_event_stored.refresh_from_db()
        assert (payment.status, failed_event_stored.status) == ("failed", "processed")
        assert notices(user) == []

        beat_after(settings.OUTBOX_GRACE_SECONDS + 1)

        assert len(notices(user)) == 1
        beat_after(settings.OUTBOX_GRACE_SECONDS * 4)  # sent once: a later sweep finds nothing left to send
        assert len(notices(user)) == 1

    def test_within_the_grace_the_sweeper_leaves_a_publish_that_may_still_be_on_its_way(
        self, failed_event_stored, user, django_capture_on_commit_callbacks, settings
    ):
        with django_capture_on_commit_callbacks(execute=False):
            webhook_drain(provider="stripe")
        beat_after(1)
        assert notices(user) == []
        beat_after(settings.OUTBOX_GRACE_SECONDS + 1)
        assert len(notices(user)) == 1


class TestTheBrokerRefusesTheFollowUp:
    def test_the_sweeper_sends_it_once_the_broker_is_back(
        self, failed_event_stored, user, django_capture_on_commit_callbacks, settings
    ):
        with broker_down(), django_capture_on_commit_callbacks(execute=True):
            webhook_drain(provider="stripe")
        assert notices(user) == []

        beat_after(settings.OUTBOX_GRACE_SECONDS + 1)

        assert len(notices(user)) == 1


class TestTheFollowUpIsPublished:
    def test_it_runs_once_and_the_sweeper_sends_only_the_notice_another_drain_lost(
        self, failed_event_stored, user, client, django_capture_on_commit_callbacks, settings
    ):
        with eager_tasks(), django_capture_on_commit_callbacks(execute=True):
            webhook_drain(provider="stripe")
        assert len(notices(user)) == 1
        second = PaymentFactory(invoice=InvoiceFactory(owner=user, amount=900), payment_intent_id="pi_follow2")
        evt = fakes.event("payment_intent.payment_failed", fakes.intent(second, error=fakes.decline_error()))
        body = fakes.body_of(evt)
        with django_capture_on_commit_callbacks(execute=False):
            client.post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=fakes.sign(body))
            webhook_drain(provider="stripe")  # this drain's worker dies before it publishes

        beat_after(settings.OUTBOX_GRACE_SECONDS + 1)

        sent = notices(user)
        assert len(sent) == 2 and second.invoice.number in sent[1].subject
