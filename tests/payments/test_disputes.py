"""Disputes (chargebacks) through the webhook endpoint: where each stands is recorded on its payment, in any order.

Stripe sends charge.dispute.created, .updated, .funds_withdrawn, .funds_reinstated and .closed, each carrying
the Dispute as it stood then (status warning_needs_response, warning_under_review, needs_response,
under_review, then warning_closed, won, lost or prevented).
"""

import time

import pytest

from integrations.models import Alert, WebhookEvent
from payments.models import Payment

from . import stripe_fakes as fakes
from .factories import InvoiceFactory, PaymentFactory
from .test_webhooks import deliver

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment(user):
    """A paid invoice: the disputed charge's payment succeeded."""
    return PaymentFactory(
        invoice=InvoiceFactory(owner=user, amount=2500, status="paid"),
        status="succeeded",
        payment_intent_id="pi_hook1",
        charge_id="ch_d",
    )


def send(client, run_on_commit, type, status, *, created=None, dispute_id="dp_1"):
    evt = fakes.event(f"charge.dispute.{type}", fakes.dispute(dispute_id, status=status), created=created)
    with run_on_commit():
        assert deliver(client, evt).status_code == 200
    return WebhookEvent.objects.get(event_id=evt["id"])


def open_alerts():
    return list(Alert.objects.filter(kind="dispute", resolved_at__isnull=True).order_by("pk"))


def test_a_lost_dispute_is_recorded_on_the_payment_and_tells_staff_the_money_is_gone(
    client, admin_client, payment, run_on_commit
):
    """The lost chargeback left the payment and invoice showing paid with the dispute open for good."""
    now = int(time.time())
    send(client, run_on_commit, "created", "needs_response", created=now - 60)
    closed = send(client, run_on_commit, "closed", "lost", created=now)

    assert closed.status == "processed"
    payment.refresh_from_db()
    assert (payment.dispute_id, payment.dispute_status) == ("dp_1", "lost")
    assert payment.disputed_at is not None
    (alert,) = open_alerts()
    assert alert.severity == "critical" and alert.dedupe_key == "dispute:dp_1:lost"
    assert "lost" in alert.message and payment.invoice.number in alert.message and "2500 USD" in alert.message
    # The alert asking for a response before the deadline is over: the hub closed it.
    assert Alert.objects.get(dedupe_key="dispute:dp_1").resolved_at is not None
    # Staff find the payments whose dispute was lost in admin.
    page = admin_client.get("/admin/payments/payment/?dispute_status=lost")
    assert page.status_code == 200 and payment.invoice.number in page.content.decode()


def test_a_won_dispute_is_recorded_and_closes_the_respond_alert_without_a_new_one(client, payment, run_on_commit):
    now = int(time.time())
    send(client, run_on_commit, "created", "needs_response", created=now - 120)
    send(client, run_on_commit, "funds_withdrawn", "needs_response", created=now - 120)
    send(client, run_on_commit, "updated", "under_review", created=now - 60)
    payment.refresh_from_db()
    assert payment.dispute_status == "under_review"

    send(client, run_on_commit, "closed", "won", created=now)
    send(client, run_on_commit, "funds_reinstated", "won", created=now)

    payment.refresh_from_db()
    assert (payment.dispute_status, payment.status) == ("won", "succeeded")
    assert payment.invoice.status == "paid"
    assert open_alerts() == []
    assert Alert.objects.filter(kind="dispute").count() == 1  # the respond alert, resolved


def test_an_inquiry_closed_without_a_chargeback_takes_nothing(client, payment, run_on_commit):
    now = int(time.time())
    send(client, run_on_commit, "created", "warning_needs_response", created=now - 60)
    send(client, run_on_commit, "closed", "warning_closed", created=now)
    payment.refresh_from_db()
    assert payment.dispute_status == "warning_closed"
    assert open_alerts() == []


def test_a_closed_dispute_arriving_before_its_created_stays_closed(client, payment, run_on_commit):
    """Events arrive in any order: the older created (needs_response) and updated must not reopen a lost
    dispute, nor ask staff to respond to a dispute already decided."""
    now = int(time.time())
    send(client, run_on_commit, "closed", "lost", created=now)
    send(client, run_on_commit, "created", "needs_response", created=now - 600)
    send(client, run_on_commit, "updated", "under_review", created=now - 300)

    payment.refresh_from_db()
    assert (payment.dispute_status, payment.disputed_at is not None) == ("lost", True)
    assert [a.dedupe_key for a in open_alerts()] == ["dispute:dp_1:lost"]


def test_an_older_update_does_not_overwrite_a_newer_one(client, payment, run_on_commit):
    now = int(time.time())
    send(client, run_on_commit, "updated", "under_review", created=now)
    send(client, run_on_commit, "created", "needs_response", created=now - 60)
    payment.refresh_from_db()
    assert payment.dispute_status == "under_review"


def test_a_lost_dispute_reported_again_alerts_once_and_never_reopens_a_resolved_alert(client, payment, run_on_commit):
    now = int(time.time())
    send(client, run_on_commit, "created", "needs_response", created=now - 60)
    send(client, run_on_commit, "closed", "lost", created=now)
    (alert,) = open_alerts()
    assert (alert.dedupe_key, alert.occurrences) == ("dispute:dp_1:lost", 1)

    # Another event saying the same (an update after the close), then staff close the alert and one more comes.
    send(client, run_on_commit, "updated", "lost", created=now + 1)
    alert.refresh_from_db()
    assert alert.occurrences == 1
    Alert.objects.filter(pk=alert.pk).update(resolved_at=alert.last_seen_at)
    send(client, run_on_commit, "updated", "lost", created=now + 2)
    assert open_alerts() == []


def test_a_lost_dispute_on_a_charge_the_hub_does_not_know_still_alerts(client, run_on_commit):
    evt = fakes.event(
        "charge.dispute.closed", fakes.dispute("dp_9", status="lost", charge="ch_other", payment_intent=None)
    )
    with run_on_commit():
        assert deliver(client, evt).status_code == 200
    (alert,) = open_alerts()
    assert "dp_9" in alert.message and "ch_other" in alert.message
    assert not Payment.objects.exists()


def test_the_dispute_is_in_the_payment_api_output_and_its_schema(client, staff_client, payment, run_on_commit):
    """Recorded on the payment, the dispute was shown only in admin: the API's payments left it out."""
    from drf_spectacular.generators import SchemaGenerator

    now = int(time.time())
    send(client, run_on_commit, "created", "needs_response", created=now - 60)
    send(client, run_on_commit, "closed", "lost", created=now)
    [shown] = staff_client.get(f"/api/v1/payments/invoices/{payment.invoice.pk}/").json()["payments"]
    payment.refresh_from_db()
    assert (shown["dispute_id"], shown["dispute_status"]) == ("dp_1", "lost")
    assert shown["dispute_event_at"] == payment.dispute_event_at.isoformat().replace("+00:00", "Z")
    assert shown["disputed_at"] == payment.disputed_at.isoformat().replace("+00:00", "Z")
    properties = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]["Payment"][
        "properties"
    ]
    for name in ("dispute_id", "dispute_status", "dispute_event_at", "disputed_at"):
        assert properties[name]["readOnly"] and properties[name]["description"], name


def test_a_payment_never_disputed_shows_no_dispute(staff_client, payment):
    [shown] = staff_client.get(f"/api/v1/payments/invoices/{payment.invoice.pk}/").json()["payments"]
    # As failure_code: an empty string for no id or status (and null for no time).
    assert (shown["dispute_id"], shown["dispute_status"], shown["dispute_event_at"], shown["disputed_at"]) == (
        "",
        "",
        None,
        None,
    )
