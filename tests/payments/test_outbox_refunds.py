"""No refund stalls or is lost (issue 17 point 5): a broker error after commit, a worker killed
mid-run and a lost message each delay the refund by at most the sweep interval, and Stripe makes
it once (the re-sent task carries the same Idempotency-Key)."""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from payments.models import Refund
from tests.integrations.outbox_kit import broker_down, make_overdue, next_attempt, sweep

from .factories import SucceededPaymentFactory
from .test_refunds import REFUNDS_URL, refunds_url, stripe_refunds

pytestmark = pytest.mark.django_db

SENT = {"payments.refund_send": 1}


@pytest.fixture
def payment(user):
    return SucceededPaymentFactory(invoice__owner=user, invoice__amount=1000, payment_intent_id="pi_paid1")


def request_refund(client, payment, capture, amount=400):
    with capture(execute=True):
        response = client.post(refunds_url(payment), {"amount": amount}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    return Refund.objects.get(pk=response.json()["id"])


def test_a_broker_error_after_commit_answers_202_and_the_sweeper_sends_the_refund(
    staff_client, payment, http, django_capture_on_commit_callbacks
):
    made = stripe_refunds(http)
    with broker_down():
        refund = request_refund(staff_client, payment, django_capture_on_commit_callbacks)
    assert made == {} and next_attempt(refund) <= timezone.now()
    assert sweep()["sent"] == SENT
    refund.refresh_from_db()
    assert (refund.status, refund.external_id, refund.next_attempt_at) == ("succeeded", "re_1", None)
    assert made == {f"hub-refund-{refund.pk}": "re_1"}


def test_a_lost_refund_message_is_sent_after_the_grace(
    staff_client, payment, http, settings, django_capture_on_commit_callbacks
):
    made = stripe_refunds(http)
    refund = request_refund(staff_client, payment, django_capture_on_commit_callbacks)  # never consumed: lost
    assert sweep()["sent"] == {}
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=settings.OUTBOX_GRACE_SECONDS + 1)):
        assert sweep()["sent"] == SENT
    refund.refresh_from_db()
    assert refund.status == "succeeded" and len(made) == 1


def test_a_refund_killed_mid_call_is_not_made_twice(staff_client, payment, http, django_capture_on_commit_callbacks):
    made = stripe_refunds(http)
    refund = request_refund(staff_client, payment, django_capture_on_commit_callbacks)
    # The killed run's request reached Stripe, which made the refund; the worker died before storing its id.
    made[f"hub-refund-{refund.pk}"] = "re_made_by_the_dead_run"
    make_overdue(refund)
    assert sweep()["sent"] == SENT
    refund.refresh_from_db()
    assert (refund.status, refund.external_id) == ("succeeded", "re_made_by_the_dead_run")
    assert len(made) == 1  # the same Idempotency-Key: Stripe answered with the first refund
    assert [c.request.headers["Idempotency-Key"] for c in http.calls] == [f"hub-refund-{refund.pk}"]


def test_a_refund_given_up_on_is_left_for_reconciliation_not_resent(
    staff_client, payment, http, django_capture_on_commit_callbacks, celery_eager
):
    for _ in range(4):  # the first attempt and three retries
        http.post(REFUNDS_URL, json={"error": {"type": "api_error", "message": "boom"}}, status=503)
    refund = request_refund(staff_client, payment, django_capture_on_commit_callbacks)
    refund.refresh_from_db()
    assert (refund.status, refund.next_attempt_at) == ("pending", None)
    assert sweep()["sent"] == {}
