"""A provider webhook that names an erased user and arrives after the erasure redacted the webhook payloads
is still processed, and then redacted too, not kept whole until the retention policy scrubs it.

Stripe retries a delivery for days, and the erasure's own cancel of a subscription makes Stripe send an
event while (or after) the erasure runs.
"""

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from integrations.models import WebhookEvent
from payments.models import Payment
from privacy import erasure as erasure_service
from privacy.models import ErasedReference
from privacy.tasks import sweep
from tests.payments import stripe_fakes
from tests.payments.factories import CustomerFactory, InvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe_webhooks(settings):
    settings.STRIPE_WEBHOOK_SECRET = stripe_fakes.WEBHOOK_SECRET


def _deliver(evt):
    body = stripe_fakes.body_of(evt)
    return Client().post(
        "/webhooks/stripe/", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=stripe_fakes.sign(body)
    )


def test_a_stripe_event_naming_the_erased_user_that_arrives_after_the_erasure_is_processed_then_redacted(
    user, staff_user, stripe_webhooks, eager, django_capture_on_commit_callbacks
):
    CustomerFactory(user=user, external_id="cus_lateuser")
    payment = PaymentFactory(invoice=InvoiceFactory(owner=user), payment_intent_id="pi_lateuser")
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"
    erasure.refresh_from_db()

    obj = stripe_fakes.intent(payment, status="requires_payment_method", error={"message": "Card declined."})
    obj |= {"customer": "cus_lateuser", "receipt_email": user.email}
    evt = stripe_fakes.event("payment_intent.payment_failed", obj, event_id="evt_late_after_erasure")
    with django_capture_on_commit_callbacks(execute=True):
        assert _deliver(evt).status_code == 200

    assert Payment.objects.get(pk=payment.pk).status == "failed"  # processed: the kept payment row is current
    event = WebhookEvent.objects.get(provider="stripe", event_id="evt_late_after_erasure")
    assert event.status == "processed"
    assert user.email not in str(event.payload) and "cus_lateuser" not in str(event.payload), event.payload
    assert event.payload == {"redacted": f"privacy erasure of {erasure.pseudonym}"}


def test_an_event_of_another_user_is_kept_whole(
    user, other_user, staff_user, stripe_webhooks, eager, django_capture_on_commit_callbacks
):
    """The check that makes the test above able to fail: only what names the erased user is redacted."""
    PaymentFactory(invoice=InvoiceFactory(owner=user), payment_intent_id="pi_lateuser")
    theirs = PaymentFactory(invoice=InvoiceFactory(owner=other_user), payment_intent_id="pi_otheruser")
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    obj = stripe_fakes.intent(theirs, status="requires_payment_method", error={"message": "Card declined."})
    obj |= {"receipt_email": other_user.email}
    with django_capture_on_commit_callbacks(execute=True):
        _deliver(stripe_fakes.event("payment_intent.payment_failed", obj, event_id="evt_other_user"))

    event = WebhookEvent.objects.get(provider="stripe", event_id="evt_other_user")
    assert event.status == "processed" and event.payload["data"]["object"]["receipt_email"] == other_user.email


def test_the_digests_are_forgotten_after_the_late_webhook_window(user, staff_user, settings, eager):
    CustomerFactory(user=user, external_id="cus_lateuser")
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"
    assert ErasedReference.objects.filter(erasure=erasure).count() == 2  # the customer id and the email

    with time_machine.travel(timezone.now() + timedelta(days=settings.PRIVACY_LATE_WEBHOOK_DAYS - 1)):
        sweep()
    assert ErasedReference.objects.filter(erasure=erasure).count() == 2
    with time_machine.travel(timezone.now() + timedelta(days=settings.PRIVACY_LATE_WEBHOOK_DAYS, minutes=1)):
        assert sweep()["erased_references_purged"] == 2
    assert not ErasedReference.objects.exists()


def test_with_no_erasure_kept_a_drained_batch_costs_the_finisher_one_small_query(user, django_assert_num_queries):
    """Nothing to match: the drain's finisher neither hashes every payload string nor sends their digests."""
    payment = PaymentFactory(invoice=InvoiceFactory(owner=user), payment_intent_id="pi_noerasure")
    obj = stripe_fakes.intent(payment, status="requires_payment_method", error={"message": "Card declined."})
    event = WebhookEvent.objects.create(
        provider="stripe",
        event_id="evt_no_erasure",
        type="payment_intent.payment_failed",
        payload=stripe_fakes.event("payment_intent.payment_failed", obj | {"receipt_email": user.email}),
    )
    with django_assert_num_queries(1) as queries:
        assert erasure_service.webhooks_redact_late([event]) == 0
    assert erasure_service._ref_digest(user.email) not in queries.captured_queries[0]["sql"]
