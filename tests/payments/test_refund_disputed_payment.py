"""A refund Stripe would refuse because of a chargeback is refused by the hub first, with nothing written or sent.

Stripe withdraws the disputed amount when a chargeback opens and gives it to the cardholder for good when the
dispute is lost; it refunds neither a charged-back charge nor one whose chargeback is still open (the Dispute's
is_charge_refundable is false: accepting the dispute is how the money goes back). An inquiry takes no money and
may be settled by a refund, and a won dispute leaves the charge whole. A refund queued before the chargeback
opened or was lost fails in its task instead, without asking Stripe.
"""

import time

import pytest

from integrations.audit.models import AuditEvent
from integrations.models import Alert, ProviderCall
from payments.models import Invoice, Payment, Refund

from . import stripe_fakes as fakes
from .test_dispute_lost_invoice import paid_invoice, send
from .test_refunds import stripe_refunds

pytestmark = pytest.mark.django_db


def refunds_url(invoice):
    return f"/api/v1/payments/payments/{invoice.payments.get().pk}/refunds/"


def nothing_refunded(invoice, http, status):
    invoice.refresh_from_db()
    payment = invoice.payments.get()
    assert not Refund.objects.exists()
    assert (invoice.status, invoice.amount_refunded, payment.amount_refunded) == (status, 0, 0)
    assert not http.calls and not ProviderCall.objects.exists()


def test_a_refund_of_a_charged_back_payment_is_refused_before_stripe_is_asked(
    client, user, staff_client, http, run_on_commit
):
    invoice = paid_invoice(user)
    send(client, run_on_commit, "closed", "lost", created=int(time.time()))
    stripe_refunds(http)

    with run_on_commit():
        response = staff_client.post(refunds_url(invoice), {"amount": 500}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert (body["error"], body["dispute_status"], body["invoice_status"]) == (
        "payment_charged_back",
        "lost",
        "charged_back",
    )
    assert "charged back" in body["detail"] and "Nothing was refunded" in body["detail"]
    nothing_refunded(invoice, http, "charged_back")


@pytest.mark.parametrize("status", ["needs_response", "under_review"])
def test_a_refund_while_a_chargeback_is_open_is_refused_and_says_to_accept_the_dispute(
    client, user, staff_client, http, run_on_commit, status
):
    invoice = paid_invoice(user)
    send(client, run_on_commit, "created", status, created=int(time.time()))
    stripe_refunds(http)

    with run_on_commit():
        response = staff_client.post(refunds_url(invoice), {}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert (body["error"], body["dispute_status"]) == ("payment_disputed", status)
    assert "accept the dispute" in body["detail"] and "dp_1" in body["detail"]
    nothing_refunded(invoice, http, "paid")


@pytest.mark.parametrize(
    "events",
    [
        [("created", "warning_needs_response")],  # an inquiry: a refund may settle it
        [("created", "needs_response"), ("closed", "won")],  # won: the money was reinstated
    ],
)
def test_a_refund_during_an_inquiry_or_after_a_won_dispute_goes_to_stripe(
    client, user, staff_client, http, run_on_commit, events
):
    invoice = paid_invoice(user)
    now = int(time.time())
    for n, (kind, status) in enumerate(events):
        send(client, run_on_commit, kind, status, created=now + n)
    stripe_refunds(http)

    with run_on_commit():
        response = staff_client.post(refunds_url(invoice), {"amount": 500}, format="json")

    assert response.status_code == 202, response.json()
    assert list(Refund.objects.values_list("amount", "status")) == [(500, "succeeded")]
    invoice.refresh_from_db()
    assert invoice.status == "partially_refunded"


def test_the_admin_refund_action_says_why_a_charged_back_payment_was_not_refunded(
    client, user, admin_client, http, run_on_commit
):
    refundable = paid_invoice(user, intents=("pi_other",))
    charged_back = paid_invoice(user)
    send(client, run_on_commit, "closed", "lost", created=int(time.time()))
    stripe_refunds(http)
    payment = charged_back.payments.get()

    with run_on_commit():
        response = admin_client.post(
            "/admin/payments/payment/",
            {"action": "refund_in_full", "_selected_action": [payment.pk, refundable.payments.get().pk]},
            follow=True,
        )

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any(f"Payment {payment.pk}:" in m and "charged back" in m for m in shown), shown
    assert any(m.startswith("1 refund(s) queued") for m in shown), shown
    # Only the other payment was refunded; the charged-back one has no refund row and went nowhere near Stripe.
    assert list(Refund.objects.values_list("payment__payment_intent_id", "status")) == [("pi_other", "succeeded")]
    assert len(http.calls) == 1
    assert Payment.objects.get(pk=payment.pk).amount_refunded == 0
    assert Invoice.objects.get(pk=charged_back.pk).status == "charged_back"
    denied = AuditEvent.objects.get(action="admin.refund_in_full", outcome="denied")
    assert denied.details["error"] == "payment_charged_back"


def test_a_refund_of_another_payment_of_a_charged_back_invoice_is_refused_naming_the_invoice(
    client, user, staff_client, http, run_on_commit
):
    """Paid twice, the extra payment partly refunded: a lost dispute on the first takes the invoice's own money
    (charged_back, final). The other payment's charge is not disputed, but no refund of it can be recorded."""
    invoice = paid_invoice(user, intents=("pi_hook1", "pi_hook2"))
    Payment.objects.filter(payment_intent_id="pi_hook2").update(amount_refunded=1000)
    send(client, run_on_commit, "closed", "lost", created=int(time.time()))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back) == ("charged_back", 1000)
    stripe_refunds(http)
    other = Payment.objects.get(payment_intent_id="pi_hook2")

    with run_on_commit():
        response = staff_client.post(f"/api/v1/payments/payments/{other.pk}/refunds/", {}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert (body["error"], body["dispute_status"], body["invoice_status"]) == (
        "payment_charged_back",
        "",
        "charged_back",
    )
    assert f"Invoice {invoice.number} was charged back" in body["detail"]
    assert not Refund.objects.exists() and not http.calls and not ProviderCall.objects.exists()


def queued_refund(staff_client, invoice, amount):
    """A refund requested while the payment was refundable, its send task not run yet (its row pending)."""
    response = staff_client.post(refunds_url(invoice), {"amount": amount}, format="json")
    assert response.status_code == 202, response.json()
    return Refund.objects.get(pk=response.json()["id"])


@pytest.mark.parametrize(
    "events, code, invoice_status",
    [
        ([("created", "needs_response")], "payment_disputed", "paid"),
        ([("created", "needs_response"), ("closed", "lost")], "payment_charged_back", "charged_back"),
    ],
)
def test_a_refund_queued_before_a_chargeback_fails_without_asking_stripe(
    client, user, staff_client, http, run_on_commit, events, code, invoice_status
):
    from payments.tasks import refund_send

    invoice = paid_invoice(user)
    refund = queued_refund(staff_client, invoice, 500)
    now = int(time.time())
    for n, (kind, status) in enumerate(events):
        send(client, run_on_commit, kind, status, created=now + n)
    stripe_refunds(http)
    alerts_before = set(Alert.objects.values_list("pk", flat=True))

    assert refund_send.apply(args=[refund.pk]).get() == "refused"

    assert not http.calls and not ProviderCall.objects.exists()
    refund.refresh_from_db()
    assert refund.status == "failed" and refund.next_attempt_at is None  # out of the outbox: never re-sent
    assert refund.failure_reason.startswith(f"{code}: ") and "Nothing was refunded" in refund.failure_reason
    shown = staff_client.get(refunds_url(invoice)).json()
    assert [(r["status"], r["failure_reason"]) for r in shown] == [("failed", refund.failure_reason)]
    # The dispute's own alert says what to do; the refund adds no task_failed alert beside it.
    assert not Alert.objects.exclude(pk__in=alerts_before).exists()
    invoice.refresh_from_db()
    payment = invoice.payments.get()
    assert (invoice.status, invoice.amount_refunded, payment.amount_refunded) == (invoice_status, 0, 0)
    # A failed refund no longer counts against the remainder (once the dispute is won, all of it is refundable).
    assert not payment.refunds.filter(status__in=Refund.COUNTED).exists()


def test_a_queued_refund_an_earlier_attempt_may_have_made_is_still_asked_of_stripe_after_a_chargeback(
    client, user, staff_client, http, run_on_commit
):
    """Stripe may have made it before it stopped answering: only Stripe can say, by the same Idempotency-Key."""
    from payments.tasks import refund_send

    invoice = paid_invoice(user)
    refund = queued_refund(staff_client, invoice, 500)
    http.post(f"{fakes.API}/v1/refunds", json={"error": {"type": "api_error", "message": "boom"}}, status=503)
    refund_send.apply(args=[refund.pk], retries=3)  # its last attempt: Stripe never confirmed it
    refund.refresh_from_db()
    assert (refund.status, refund.external_id) == ("pending", "")
    send(client, run_on_commit, "created", "needs_response", created=int(time.time()))
    http.reset()
    made = stripe_refunds(http)

    assert refund_send.apply(args=[refund.pk]).get() == "sent"

    assert [c.request.headers["Idempotency-Key"] for c in http.calls] == [f"hub-refund-{refund.pk}"]
    refund.refresh_from_db()
    assert (refund.status, refund.external_id) == ("succeeded", made[f"hub-refund-{refund.pk}"])
