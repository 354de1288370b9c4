"""A lost dispute takes the money back from the invoice, through the webhook endpoint, in any order of events.

A chargeback withdraws the disputed amount when it opens (charge.dispute.funds_withdrawn) and Stripe reinstates it
if the dispute is won; once lost, it is gone for good. The hub recorded the lost dispute on the payment and alerted
staff, but the invoice (what its owner and the API show) still said plainly paid.
"""

import time

import pytest

from integrations.models import Alert
from payments.models import Invoice, Payment

from . import stripe_fakes as fakes
from .factories import InvoiceFactory, PaymentFactory
from .test_webhooks import deliver

pytestmark = pytest.mark.django_db


def paid_invoice(user, *, amount=2500, refunded=0, intents=("pi_hook1",)):
    invoice = InvoiceFactory(
        owner=user,
        amount=amount,
        status="partially_refunded" if refunded else "paid",
        amount_refunded=refunded,
    )
    for n, intent in enumerate(intents, start=1):
        PaymentFactory(
            invoice=invoice,
            attempt=n,
            amount=amount,
            status="succeeded",
            payment_intent_id=intent,
            charge_id=f"ch_{intent}",
            checkout_session_id=f"cs_test_{intent}",
            amount_refunded=refunded if n == 1 else 0,
        )
    return invoice


def send(client, run_on_commit, type, status, *, created, amount=2500, intent="pi_hook1", evt_id=None):
    evt = fakes.event(
        f"charge.dispute.{type}",
        fakes.dispute("dp_1", status=status, amount=amount, charge=f"ch_{intent}", payment_intent=intent),
        created=created,
    )
    if evt_id:
        evt["id"] = evt_id
    with run_on_commit():
        assert deliver(client, evt).status_code == 200
    return evt


def lost_alerts():
    return list(Alert.objects.filter(kind="dispute", dedupe_key="dispute:dp_1:lost"))


def test_a_lost_dispute_shows_the_invoice_charged_back_to_its_owner_staff_and_admin(
    client, user, user_client, staff_client, admin_client, run_on_commit
):
    invoice = paid_invoice(user)
    now = int(time.time())
    send(client, run_on_commit, "created", "needs_response", created=now - 120)
    send(client, run_on_commit, "funds_withdrawn", "needs_response", created=now - 119)
    # Open, the chargeback may still be won and the money reinstated: the invoice stays paid.
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back) == ("paid", 0)

    send(client, run_on_commit, "closed", "lost", created=now)

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back, invoice.amount_refunded) == ("charged_back", 2500, 0)
    shown = user_client.get(f"/api/v1/payments/invoices/{invoice.pk}/").json()
    assert (shown["status"], shown["amount_charged_back"]) == ("charged_back", 2500)
    [payment] = staff_client.get(f"/api/v1/payments/invoices/{invoice.pk}/").json()["payments"]
    assert (payment["dispute_status"], payment["dispute_amount"]) == ("lost", 2500)
    (alert,) = lost_alerts()
    assert alert.resolved_at is None and alert.severity == "critical"
    assert "charged_back" in alert.message and "still shows paid" not in alert.message
    page = admin_client.get("/admin/payments/invoice/?status=charged_back")
    assert page.status_code == 200 and invoice.number in page.content.decode() and "25.00" in page.content.decode()
    # The customer's return page no longer says the invoice is paid.
    text = client.get("/payments/checkout/success", {"session_id": "cs_test_pi_hook1"}).content.decode()
    assert "then reversed" in text and "is paid" not in text


def test_a_won_after_a_lost_changes_nothing_in_either_order_of_arrival(client, user, run_on_commit):
    invoice = paid_invoice(user)
    now = int(time.time())
    send(client, run_on_commit, "closed", "lost", created=now)
    # Later events saying won (a closed and funds_reinstated created after it), and older ones still open.
    send(client, run_on_commit, "closed", "won", created=now + 60)
    send(client, run_on_commit, "funds_reinstated", "won", created=now + 61)
    send(client, run_on_commit, "created", "needs_response", created=now - 600)
    send(client, run_on_commit, "funds_withdrawn", "needs_response", created=now - 599)

    payment = Payment.objects.get(invoice=invoice)
    invoice.refresh_from_db()
    assert payment.dispute_status == "lost"
    assert (invoice.status, invoice.amount_charged_back) == ("charged_back", 2500)
    assert len(lost_alerts()) == 1


def test_a_lost_after_a_won_takes_the_money(client, user, run_on_commit):
    """Not something Stripe does, but the hub then believes the loss: money shown gone is the safe mistake."""
    invoice = paid_invoice(user)
    now = int(time.time())
    send(client, run_on_commit, "closed", "won", created=now)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    send(client, run_on_commit, "closed", "lost", created=now - 30)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back) == ("charged_back", 2500)


def test_a_duplicate_lost_changes_nothing(client, user, run_on_commit):
    invoice = paid_invoice(user)
    now = int(time.time())
    first = send(client, run_on_commit, "closed", "lost", created=now)
    send(client, run_on_commit, "closed", "lost", created=now, evt_id=first["id"])  # the same delivery again
    send(client, run_on_commit, "updated", "lost", created=now + 5)  # another event saying the same
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back) == ("charged_back", 2500)
    (alert,) = lost_alerts()
    assert alert.occurrences == 1


def test_a_lost_dispute_after_a_partial_refund_takes_what_was_left(client, user, run_on_commit):
    invoice = paid_invoice(user, refunded=1000)
    send(client, run_on_commit, "closed", "lost", created=int(time.time()), amount=1500)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_refunded, invoice.amount_charged_back) == ("charged_back", 1000, 1500)


def test_a_lost_dispute_of_part_of_the_amount_shows_that_part(client, user, run_on_commit):
    invoice = paid_invoice(user)
    send(client, run_on_commit, "closed", "lost", created=int(time.time()), amount=900)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back) == ("charged_back", 900)


def test_a_lost_dispute_on_the_extra_payment_of_an_invoice_paid_twice_leaves_it_paid(client, user, run_on_commit):
    """The other payment still holds the invoice's amount; staff are told why the invoice stays paid."""
    invoice = paid_invoice(user, intents=("pi_hook1", "pi_hook2"))
    send(client, run_on_commit, "closed", "lost", created=int(time.time()), intent="pi_hook2")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back) == ("paid", 0)
    (alert,) = lost_alerts()
    assert "stays paid" in alert.message


def test_a_fully_refunded_invoice_has_nothing_left_to_lose(client, user, run_on_commit):
    invoice = paid_invoice(user, refunded=2500)
    Invoice.objects.filter(pk=invoice.pk).update(status="refunded")
    send(client, run_on_commit, "closed", "lost", created=int(time.time()))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_charged_back) == ("refunded", 0)


def refunded(client, run_on_commit, *, amount, created, intent="pi_hook1", refund_id="re_late"):
    """Stripe's refund.updated for a refund of `amount` on the payment, delivered through the endpoint."""
    evt = fakes.event("refund.updated", fakes.refund(refund_id, amount=amount, payment_intent=intent), created=created)
    with run_on_commit():
        assert deliver(client, evt).status_code == 200


def test_a_refund_reported_after_the_loss_leaves_what_the_other_order_leaves(client, user, run_on_commit):
    """Stripe withdraws for a dispute no more than the charge still holds (a refunded charge loses nothing more):
    a partial refund made before the loss, reported after it, lowers what the loss took, as it did reported first.
    Before, the invoice showed 1000 refunded and 2500 charged back, more than its 2500 was ever paid."""
    invoice = paid_invoice(user)
    now = int(time.time())
    send(client, run_on_commit, "closed", "lost", created=now)
    refunded(client, run_on_commit, amount=1000, created=now - 60)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_refunded, invoice.amount_charged_back) == ("charged_back", 1000, 1500)


def test_a_full_refund_reported_after_the_loss_shows_the_invoice_refunded(client, user, run_on_commit):
    """A fully refunded charge can no longer be charged back (Stripe's docs): the loss took nothing, and the invoice
    ends refunded, as test_a_fully_refunded_invoice_has_nothing_left_to_lose has it when the refund comes first."""
    invoice = paid_invoice(user)
    now = int(time.time())
    send(client, run_on_commit, "closed", "lost", created=now)
    assert "now shows charged_back" in Alert.objects.get(kind=Alert.Kind.DISPUTE, resolved_at__isnull=True).message
    refunded(client, run_on_commit, amount=2500, created=now - 60)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_refunded, invoice.amount_charged_back) == ("refunded", 2500, 0)
    # Staff's open alert no longer tells them to chase a charged-back invoice.
    message = Alert.objects.get(kind=Alert.Kind.DISPUTE, resolved_at__isnull=True).message
    assert "charged_back" not in message and "now shows refunded" in message


@pytest.mark.django_db(transaction=True)
def test_the_migration_charges_back_the_invoices_of_disputes_lost_before_it_where_stripe_s_amount_is_stored(user):
    """Before 0005 a lost dispute kept no amount. Its invoice is charged back when the hub still holds Stripe's
    word for the amount: the newest stored event saying lost (not an earlier one), else the lost dispute's alert
    (retention empties payloads after 30 days; alerts stay). Without either, nothing is guessed."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("payments", "0005_invoice_charged_back")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        old = executor.loader.project_state([node for node in latest if node[0] != "payments"] + before).apps
        OldInvoice, OldPayment = old.get_model("payments", "Invoice"), old.get_model("payments", "Payment")
        OldEvent, OldAlert = old.get_model("integrations", "WebhookEvent"), old.get_model("integrations", "Alert")

        def lost_before_0005(name):
            invoice = OldInvoice.objects.create(owner_id=user.pk, number=f"INV-{name}", amount=2500, status="paid")
            OldPayment.objects.create(
                invoice=invoice, attempt=1, amount=2500, currency="usd", status="succeeded", idempotency_key=name,
                payment_intent_id=f"pi_{name}", dispute_id=f"du_{name}", dispute_status="lost",
            )  # fmt: skip
            return invoice.pk

        def stored(name, type, status, amount, created):
            evt = fakes.event(type, fakes.dispute(f"du_{name}", status=status, amount=amount), created=created)
            OldEvent.objects.create(provider="stripe", event_id=evt["id"], type=type, payload=evt, status="processed")

        now = int(time.time())
        by_event = lost_before_0005("a")
        stored("a", "charge.dispute.created", "needs_response", 2500, now - 60)
        stored("a", "charge.dispute.closed", "lost", 1500, now)
        by_alert = lost_before_0005("b")
        OldEvent.objects.create(provider="stripe", event_id="evt_b", type="charge.dispute.closed", payload={})
        OldAlert.objects.create(
            kind="dispute",
            dedupe_key="dispute:du_b:lost",
            message="Stripe dispute du_b on invoice INV-b was lost: 900 USD (minor units) went back to the "
            "cardholder for good, with Stripe's dispute fee. The invoice still shows paid; settle it with the "
            "customer or write it off.",
        )
        unproven = lost_before_0005("c")

        MigrationExecutor(connection).migrate(latest)

        shown = {
            pk: (status, amount)
            for pk, status, amount in Invoice.objects.filter(pk__in=[by_event, by_alert, unproven]).values_list(
                "pk", "status", "amount_charged_back"
            )
        }
        assert shown == {by_event: ("charged_back", 1500), by_alert: ("charged_back", 900), unproven: ("paid", 0)}
        assert dict(Payment.objects.values_list("dispute_id", "dispute_amount")) == {
            "du_a": 1500,
            "du_b": 900,
            "du_c": 0,
        }
    finally:
        MigrationExecutor(connection).migrate(latest)
