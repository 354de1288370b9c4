"""Stripe webhooks through the inbox: signed like Stripe signs them, de-duplicated, applied in any order."""

import contextlib
import datetime as dt
import threading
import time

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

from integrations.models import Alert, ProviderCall, WebhookEvent
from integrations.webhooks import webhook_event_process
from payments.models import Invoice, Payment

from . import stripe_fakes as fakes
from .factories import CustomerFactory, InvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db

URL = "/webhooks/stripe/"
PI_URL = f"{fakes.API}/v1/payment_intents"


def deliver(client, evt, *, signature=None, secret=fakes.WEBHOOK_SECRET, timestamp=None):
    body = fakes.body_of(evt)
    sig = signature if signature is not None else fakes.sign(body, secret, timestamp)
    return client.post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sig)


def declined_then_paid(payment):
    """The card declined, then paid on a retry five seconds later: the two events, in Stripe's order."""
    now = int(time.time())
    return (
        fakes.event(
            "payment_intent.payment_failed", fakes.intent(payment, error=fakes.decline_error()), created=now - 5
        ),
        fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"), created=now),
    )


@pytest.fixture
def payment(user):
    return PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id="pi_hook1")


@pytest.fixture
def fee_lookup(http):
    """The fee task retrieves the intent with its charge's balance transaction."""
    http.get(
        f"{PI_URL}/pi_hook1",
        json=fakes.settled_intent("pi_hook1", charge_id="ch_1"),
        headers={"Request-Id": "req_fee"},
    )
    return http


class TestSignature:
    def test_a_missing_webhook_secret_answers_503_and_stores_nothing(self, client, settings, payment):
        settings.STRIPE_WEBHOOK_SECRET = ""
        response = deliver(client, fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded")))
        assert response.status_code == 503 and response.json()["error"] == "webhook_not_configured"
        assert WebhookEvent.objects.count() == 0

    def test_a_bad_signature_answers_403(self, client, payment):
        response = deliver(client, fakes.event("payment_intent.succeeded", fakes.intent(payment)), secret="whsec_wrong")
        assert response.status_code == 403 and response.json()["error"] == "bad_signature"
        assert WebhookEvent.objects.count() == 0

    def test_a_tampered_body_answers_403(self, client, payment):
        evt = fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"))
        signature = fakes.sign(fakes.body_of(evt))
        evt["data"]["object"]["amount"] = 1
        assert deliver(client, evt, signature=signature).status_code == 403

    def test_a_body_that_is_not_utf8_answers_400(self, client):
        body = b"\xff\xfe not json"
        response = client.post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=fakes.sign(body))
        assert response.status_code == 400

    def test_a_missing_signature_header_answers_403(self, client, payment):
        body = fakes.body_of(fakes.event("payment_intent.succeeded", fakes.intent(payment)))
        response = client.post(URL, body, content_type="application/json")
        assert response.status_code == 403 and response.json()["error"] == "missing_signature"

    def test_a_timestamp_older_than_the_tolerance_answers_403(self, client, payment):
        response = deliver(
            client, fakes.event("payment_intent.succeeded", fakes.intent(payment)), timestamp=time.time() - 301
        )
        assert response.status_code == 403 and response.json()["error"] == "stale_signature"
        assert WebhookEvent.objects.count() == 0

    def test_a_timestamp_within_the_tolerance_is_accepted(self, client, payment):
        response = deliver(
            client, fakes.event("payment_intent.canceled", fakes.intent(payment)), timestamp=time.time() - 290
        )
        assert response.status_code == 200

    def test_a_rotated_secret_is_verified_with_the_new_one(self, client, settings, payment):
        settings.STRIPE_WEBHOOK_SECRET = "whsec_rotated_1"
        evt = fakes.event("payment_intent.canceled", fakes.intent(payment))
        assert deliver(client, evt).status_code == 403
        assert deliver(client, evt, secret="whsec_rotated_1").status_code == 200


class TestPaymentFlow:
    def test_pay_then_succeeded_webhook_marks_the_invoice_paid_and_records_stripes_fee(
        self, client, user_client, user, http, run_on_commit
    ):
        invoice = InvoiceFactory(owner=user, amount=2500)
        http.post(f"{fakes.API}/v1/customers", json={"id": "cus_flow", "object": "customer"})
        http.post(
            PI_URL,
            json={
                "id": "pi_hook1",
                "object": "payment_intent",
                "client_secret": "pi_hook1_secret",
                "status": "requires_payment_method",
            },
        )
        assert user_client.post(f"/api/v1/payments/invoices/{invoice.pk}/pay/", {}, format="json").status_code == 200
        payment = Payment.objects.get()
        http.get(
            f"{PI_URL}/pi_hook1",
            json=fakes.settled_intent("pi_hook1", charge_id="ch_1"),
        )

        with run_on_commit():
            response = deliver(
                client,
                fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded", charge="ch_1")),
            )
        assert response.status_code == 200 and response.json()["status"] == "received"
        invoice.refresh_from_db()
        payment.refresh_from_db()
        assert (invoice.status, payment.status, payment.charge_id) == ("paid", "succeeded", "ch_1")
        assert invoice.paid_at is not None
        assert WebhookEvent.objects.get().status == "processed"
        fee = ProviderCall.objects.get(operation="charge")
        assert (fee.outcome, fee.related_id, str(fee.cost_usd)) == ("ok", str(payment.pk), "1.030000")
        assert payment.fee_recorded is True
        assert http.calls[-1].request.url == f"{PI_URL}/pi_hook1?expand%5B0%5D=latest_charge.balance_transaction"

    def test_without_a_balance_transaction_the_fee_comes_from_the_price_table(
        self, client, payment, http, run_on_commit
    ):
        http.get(
            f"{PI_URL}/pi_hook1",
            json={"id": "pi_hook1", "object": "payment_intent", "status": "succeeded", "latest_charge": None},
        )
        with run_on_commit():
            deliver(client, fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded")))
        fee = ProviderCall.objects.get(operation="charge")
        # 0.30 per charge + 2.9 % of 25.00 USD
        assert str(fee.cost_usd) == "1.025000" and fee.units == {"amount_usd": 25.0}

    def test_the_same_event_delivered_twice_is_applied_once(self, client, payment, fee_lookup, run_on_commit):
        evt = fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"))
        with run_on_commit():
            first = deliver(client, evt)
            second = deliver(client, evt)
        assert (first.json()["status"], second.json()["status"]) == ("received", "duplicate")
        assert WebhookEvent.objects.count() == 1
        assert ProviderCall.objects.filter(operation="charge").count() == 1

    def test_a_late_payment_failed_after_succeeded_leaves_the_invoice_paid(
        self, client, payment, fee_lookup, run_on_commit
    ):
        now = int(time.time())
        succeeded = fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"), created=now)
        failed = fakes.event(
            "payment_intent.payment_failed",
            fakes.intent(payment, error=fakes.decline_error()),
            created=now - 30,
        )
        # Arriving after the success was applied (delivered together, the drain would apply them in `created` order).
        with run_on_commit():
            deliver(client, succeeded)
        with run_on_commit():
            deliver(client, failed)
        payment.refresh_from_db()
        payment.invoice.refresh_from_db()
        assert (payment.status, payment.invoice.status) == ("succeeded", "paid")
        assert payment.failure_code == "" and len(mail.outbox) == 0
        assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}

    def test_a_second_payment_succeeding_on_a_paid_invoice_raises_a_critical_alert(
        self, client, payment, http, run_on_commit
    ):
        second = PaymentFactory(invoice=payment.invoice, payment_intent_id="pi_hook2")
        for pi in ("pi_hook1", "pi_hook2"):
            http.get(f"{PI_URL}/{pi}", json={"id": pi, "object": "payment_intent", "status": "succeeded"})
        with run_on_commit():
            deliver(client, fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded")))
            deliver(client, fakes.event("payment_intent.succeeded", fakes.intent(second, status="succeeded")))
        second.refresh_from_db()
        assert second.status == "succeeded"
        alert = Alert.objects.get(kind="payment_anomaly")
        assert alert.severity == "critical" and "pi_hook2" in alert.message

    def test_a_replayed_success_for_the_same_payment_raises_nothing(self, client, payment, fee_lookup, run_on_commit):
        evt = fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"))
        with run_on_commit():
            deliver(client, evt)
        WebhookEvent.objects.update(status="received")
        webhook_event_process(event_id=WebhookEvent.objects.get().pk)
        assert not Alert.objects.filter(kind="payment_anomaly").exists()

    def test_an_event_older_than_the_last_applied_one_changes_nothing_even_when_the_move_is_legal(
        self, client, payment, run_on_commit
    ):
        now = int(time.time())
        with run_on_commit():
            deliver(
                client,
                fakes.event(
                    "payment_intent.payment_failed", fakes.intent(payment, error=fakes.decline_error()), created=now
                ),
            )
        with run_on_commit():
            # failed -> canceled is a legal move, but this event predates the failure (and arrives after it).
            deliver(
                client,
                fakes.event("payment_intent.canceled", fakes.intent(payment, status="canceled"), created=now - 60),
            )
        payment.refresh_from_db()
        assert payment.status == "failed"

    def test_a_failed_payment_emails_the_owner_with_the_reason_and_shows_in_admin(
        self, client, payment, user, run_on_commit, admin_client
    ):
        with run_on_commit():
            deliver(
                client, fakes.event("payment_intent.payment_failed", fakes.intent(payment, error=fakes.decline_error()))
            )
        payment.refresh_from_db()
        payment.invoice.refresh_from_db()
        assert (payment.status, payment.failure_code, payment.invoice.status) == (
            "failed",
            "insufficient_funds",
            "failed",
        )
        assert len(mail.outbox) == 1
        message = mail.outbox[0]
        assert message.to == [user.email] and payment.invoice.number in message.subject
        assert "Your card has insufficient funds." in message.body
        # The notice is sent by a task through the gateway: one email ProviderCall, tied to the invoice.
        sent = ProviderCall.objects.get(provider="email")
        assert (sent.operation, sent.outcome, sent.units) == ("mail.send", "ok", {"messages": 1})
        assert sent.related_id == str(payment.invoice.pk)
        page = admin_client.get("/admin/payments/payment/?failure_code=insufficient_funds")
        assert page.status_code == 200 and payment.invoice.number in page.content.decode()

    def test_a_failed_invoice_can_still_be_paid_afterwards(self, client, payment, fee_lookup, run_on_commit):
        with run_on_commit():
            for evt in declined_then_paid(payment):
                deliver(client, evt)
        payment.invoice.refresh_from_db()
        assert payment.invoice.status == "paid"

    def test_payment_intent_canceled_cancels_the_attempt_but_leaves_the_invoice_open(
        self, client, payment, run_on_commit
    ):
        with run_on_commit():
            deliver(client, fakes.event("payment_intent.canceled", fakes.intent(payment, status="canceled")))
        payment.refresh_from_db()
        payment.invoice.refresh_from_db()
        assert (payment.status, payment.invoice.status) == ("canceled", "open")

    def test_checkout_completed_marks_the_invoice_paid(self, client, user, http, run_on_commit):
        payment = PaymentFactory(
            invoice=InvoiceFactory(owner=user), method="checkout", payment_intent_id="", checkout_session_id="cs_1"
        )
        http.get(f"{PI_URL}/pi_from_cs", json={"id": "pi_from_cs", "object": "payment_intent", "latest_charge": None})
        session = {
            "id": "cs_1",
            "object": "checkout.session",
            "payment_status": "paid",
            "status": "complete",
            "payment_intent": "pi_from_cs",
            "amount_total": payment.amount,
            "currency": payment.currency,
            "metadata": {},
        }
        with run_on_commit():
            deliver(client, fakes.event("checkout.session.completed", session))
        payment.refresh_from_db()
        payment.invoice.refresh_from_db()
        assert (payment.status, payment.payment_intent_id, payment.invoice.status) == (
            "succeeded",
            "pi_from_cs",
            "paid",
        )
        assert ProviderCall.objects.filter(operation="charge").count() == 1

    def test_checkout_expired_cancels_the_attempt(self, client, user, run_on_commit):
        payment = PaymentFactory(
            invoice=InvoiceFactory(owner=user), method="checkout", payment_intent_id="", checkout_session_id="cs_2"
        )
        session = {
            "id": "cs_2",
            "object": "checkout.session",
            "payment_status": "unpaid",
            "status": "expired",
            "metadata": {"hub_payment_id": str(payment.pk)},
        }
        with run_on_commit():
            deliver(client, fakes.event("checkout.session.expired", session))
        payment.refresh_from_db()
        assert payment.status == "canceled"

    def test_a_dispute_raises_a_critical_alert(self, client, payment, run_on_commit):
        Payment.objects.filter(pk=payment.pk).update(status="succeeded", charge_id="ch_d")
        dispute = {
            "id": "dp_1",
            "object": "dispute",
            "charge": "ch_d",
            "payment_intent": "pi_hook1",
            "amount": 2500,
            "currency": "usd",
            "reason": "fraudulent",
        }
        with run_on_commit():
            deliver(client, fakes.event("charge.dispute.created", dispute))
        alert = Alert.objects.get(kind="dispute")
        assert alert.severity == "critical" and "dp_1" in alert.message and payment.invoice.number in alert.message
        payment.refresh_from_db()
        assert payment.disputed_at is not None

    def test_an_unknown_event_type_is_stored_and_ignored(self, client, run_on_commit):
        with run_on_commit():
            response = deliver(client, fakes.event("balance.available", {"id": "bal", "object": "balance"}))
        assert response.status_code == 200
        assert WebhookEvent.objects.get().status == "ignored"

    def test_an_event_for_a_payment_we_do_not_know_is_processed_as_a_no_op(self, client, run_on_commit):
        stray = {"id": "pi_elsewhere", "object": "payment_intent", "status": "succeeded", "metadata": {}}
        with run_on_commit():
            deliver(client, fakes.event("payment_intent.succeeded", stray))
        assert WebhookEvent.objects.get().status == "processed"
        assert Invoice.objects.count() == 0


class TestStripeInvoices:
    def test_invoice_paid_mirrors_a_subscription_invoice_as_paid(self, client, run_on_commit):
        customer = CustomerFactory(external_id="cus_sub")
        stripe_invoice = {
            "id": "in_1",
            "object": "invoice",
            "customer": "cus_sub",
            "number": "ABC-0001",
            "amount_due": 900,
            "currency": "usd",
            "subscription": None,
        }
        with run_on_commit():
            deliver(client, fakes.event("invoice.paid", stripe_invoice))
        invoice = Invoice.objects.get(external_id="in_1")
        assert (invoice.owner, invoice.number, invoice.amount, invoice.status) == (
            customer.user,
            "ABC-0001",
            900,
            "paid",
        )

    def test_invoice_payment_failed_notifies_the_owner_and_a_later_paid_wins(self, client, run_on_commit):
        customer = CustomerFactory(external_id="cus_sub2")
        stripe_invoice = {
            "id": "in_2",
            "object": "invoice",
            "customer": "cus_sub2",
            "number": "ABC-0002",
            "amount_due": 900,
            "currency": "usd",
        }
        now = int(time.time())
        with run_on_commit():
            deliver(client, fakes.event("invoice.payment_failed", stripe_invoice, created=now - 10))
        with run_on_commit():
            deliver(client, fakes.event("invoice.paid", stripe_invoice, created=now))
            deliver(
                client, fakes.event("invoice.payment_failed", stripe_invoice, created=now - 5)
            )  # a late retry notice
        assert Invoice.objects.get(external_id="in_2").status == "paid"
        assert [m.to for m in mail.outbox] == [[customer.user.email]]

    def test_a_failure_whose_invoice_is_paid_before_its_notice_goes_mails_nothing(
        self, client, payment, fee_lookup, run_on_commit
    ):
        """A declined card retried with success: both events are drained together, and by the time the
        failure's notice runs the invoice is paid. "Please try again, the invoice is still open" would be false
        (and could make the owner pay twice), so nothing is mailed."""
        with run_on_commit():
            for evt in declined_then_paid(payment):
                deliver(client, evt)
        payment.refresh_from_db()
        payment.invoice.refresh_from_db()
        assert (payment.failure_code, payment.status, payment.invoice.status) == (
            "insufficient_funds",
            "succeeded",
            "paid",
        )
        assert mail.outbox == []
        assert not ProviderCall.objects.filter(provider="email").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_event_delivered_concurrently_is_stored_and_applied_once(payment, http, celery_eager):
    http.get(f"{PI_URL}/pi_hook1", json={"id": "pi_hook1", "object": "payment_intent", "latest_charge": None})
    evt = fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"))
    body = fakes.body_of(evt)
    signature = fakes.sign(body)
    barrier = threading.Barrier(8)
    statuses = []

    def post():
        try:
            barrier.wait()
            response = Client().post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
            statuses.append(response.json()["status"])
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["duplicate"] * 7 + ["received"]
    event = WebhookEvent.objects.get()
    # And a worker racing the eager run over the same row finds nothing left to do.
    assert webhook_event_process(event_id=event.pk).status == "skipped"
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert ProviderCall.objects.filter(operation="charge").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_processing_the_same_event_apply_it_once(payment, request):
    """Processing locks the row with SKIP LOCKED: the second worker skips it instead of applying it again."""
    from integrations.webhooks import InboundEvent, record_webhook

    evt = fakes.event("payment_intent.payment_failed", fakes.intent(payment, error=fakes.decline_error()))
    event, _ = record_webhook(
        provider="stripe", inbound=InboundEvent(event_id=evt["id"], type=evt["type"], payload=evt)
    )
    # The failure notice is a task: run tasks inline from here on, as soon as a worker's transaction commits.
    request.getfixturevalue("celery_eager")
    barrier = threading.Barrier(4)
    results = []

    def work():
        try:
            barrier.wait()
            results.append(webhook_event_process(event_id=event.pk).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("failed") == 0 and results.count("processed") == 1
    assert len(mail.outbox) == 1  # one failure notice, not four


def test_the_events_of_one_payment_are_one_object_for_the_drain_and_a_subscription_its_own(client, payment):
    """So one drainer at a time applies them, in Stripe's event order (integrations.webhooks.processing)."""
    charge = {"id": "ch_hook1", "object": "charge", "payment_intent": "pi_hook1", "amount_refunded": 0}
    expanded = charge | {"id": "ch_hook2", "payment_intent": {"id": "pi_hook1", "object": "payment_intent"}}
    events = [
        fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded")),
        fakes.event("charge.refunded", charge),
        fakes.event("charge.refunded", expanded),
        fakes.event("charge.refund.updated", fakes.refund("re_1", amount=100, payment_intent="pi_hook1")),
        fakes.event("customer.subscription.updated", fakes.subscription("sub_1", customer="cus_1")),
    ]
    for evt in events:
        assert deliver(client, evt).status_code == 200

    keys = dict(WebhookEvent.objects.values_list("event_id", "object_key"))
    assert [keys[e["id"]] for e in events] == ["pi_hook1"] * 4 + ["sub_1"]


class TestBatchDrain:
    """A drained batch reads the Payments of its payment_intent.* events in one query, with the same effect."""

    @staticmethod
    def store(evt):
        from integrations.webhooks import InboundEvent, epoch_datetime, record_webhook

        inbound = InboundEvent(
            event_id=evt["id"], type=evt["type"], payload=evt, occurred_at=epoch_datetime(evt["created"])
        )
        return record_webhook(provider="stripe", inbound=inbound)[0]

    @staticmethod
    def payment_reads(queries):
        return [q["sql"] for q in queries if q["sql"].startswith('SELECT "payments_payment"."id"')]

    def drain(self):
        from django.test.utils import CaptureQueriesContext

        from integrations.webhooks import webhook_drain

        with CaptureQueriesContext(connection) as queries:
            result = webhook_drain(provider="stripe")
        return result, self.payment_reads(queries.captured_queries)

    def test_a_batch_of_events_reads_its_payments_in_one_query(self, user):
        now = int(time.time())
        payments = [
            PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id=f"pi_batch{i}")
            for i in range(6)
        ]
        for i, payment in enumerate(payments):
            if i % 2:
                self.store(
                    fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"), created=now)
                )
            else:
                evt = fakes.event("payment_intent.payment_failed", fakes.intent(payment, error=fakes.decline_error()))
                self.store(evt | {"created": now})

        result, reads = self.drain()

        assert result.counts == {"processed": 6}
        assert len(reads) == 1  # one per event before the batch read them together
        rows = Payment.objects.filter(pk__in=[p.pk for p in payments]).order_by("pk")
        assert [(p.status, p.invoice.status) for p in rows] == [("failed", "failed"), ("succeeded", "paid")] * 3
        assert [p.failure_code for p in rows][::2] == ["insufficient_funds"] * 3

    def test_a_batch_reads_its_payments_with_their_invoices_but_not_their_owners(self, payment):
        """No handler of a payment's event reads the invoice's owner: a user row per payment built for nothing."""
        failed, paid = declined_then_paid(payment)
        self.store(failed)
        self.store(paid)
        result, (read,) = self.drain()
        payment.refresh_from_db()
        assert result.counts == {"processed": 2} and (payment.status, payment.invoice.status) == ("succeeded", "paid")
        assert '"payments_invoice"' in read and '"auth_user"' not in read

    def test_a_payment_found_by_its_intent_id_without_our_metadata_is_read_with_the_batch(self, user):
        payment = PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id="pi_nometa")
        self.store(
            fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded") | {"metadata": {}})
        )
        result, reads = self.drain()
        payment.refresh_from_db()
        assert result.counts == {"processed": 1} and len(reads) == 1 and payment.status == "succeeded"

    def test_a_payments_failure_and_success_in_one_batch_read_it_once(self, payment):
        """The batch's read serves every event of the payment: what the failure moved it to is the success's
        guess (a burst's pairs mostly share a batch; the second read was a fifth of the drain's statements)."""
        for evt in declined_then_paid(payment):
            self.store(evt)

        result, reads = self.drain()

        assert result.counts == {"processed": 2} and len(reads) == 1
        payment.refresh_from_db()
        payment.invoice.refresh_from_db()
        assert (payment.status, payment.invoice.status, payment.failure_code) == (
            "succeeded",
            "paid",
            "insufficient_funds",
        )

    def test_a_payment_whose_moves_a_poisoned_event_rolled_back_is_moved_again_from_its_real_state(
        self, payment, user, django_capture_on_commit_callbacks
    ):
        """The batch's first run moved the pair's payment (and the object the batch shares says so), then an
        event raised and rolled that run back: the run with a savepoint per handler applies both events again
        from the row's real state, once each."""
        now = int(time.time())
        pair = PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id="pi_pair")
        failed = fakes.event("payment_intent.payment_failed", fakes.intent(pair, error=fakes.decline_error()))
        self.store(failed | {"created": now - 5})
        self.store(fakes.event("payment_intent.succeeded", fakes.intent(pair, status="succeeded"), created=now - 4))
        bad = fakes.intent(payment, status="succeeded") | {"metadata": {"hub_payment_id": 12}}
        self.store(fakes.event("payment_intent.succeeded", bad, created=now))

        with django_capture_on_commit_callbacks() as callbacks:
            result, reads = self.drain()

        assert result.counts == {"processed": 2, "failed": 1}
        pair.refresh_from_db()
        pair.invoice.refresh_from_db()
        assert (pair.status, pair.invoice.status, pair.failure_code) == ("succeeded", "paid", "insufficient_funds")
        assert len([c for c in callbacks if "payments.payment_fee_record" in repr(c)]) == 1
        assert not Alert.objects.filter(kind=Alert.Kind.PAYMENT_ANOMALY).exists()

    def test_a_payment_another_event_of_the_batch_already_moved_is_not_applied_twice(
        self, user, django_capture_on_commit_callbacks
    ):
        """The batch's read of a Payment can be older than an earlier handler's write: the conditional
        transitions still apply the success once (one fee look-up queued, no anomaly alert)."""
        now = int(time.time())
        payment = PaymentFactory(
            invoice=InvoiceFactory(owner=user), method="checkout", payment_intent_id="", checkout_session_id="cs_b"
        )
        session = {
            "id": "cs_b",
            "object": "checkout.session",
            "payment_status": "paid",
            "payment_intent": "pi_cs_b",
            "amount_total": payment.amount,
            "currency": payment.currency,
            "metadata": {"hub_payment_id": str(payment.pk)},
        }
        self.store(fakes.event("checkout.session.completed", session, created=now - 5))
        self.store(
            fakes.event(
                "payment_intent.succeeded", fakes.intent(payment, status="succeeded", pi_id="pi_cs_b"), created=now
            )
        )

        with django_capture_on_commit_callbacks() as callbacks:
            result, _ = self.drain()

        assert result.counts == {"processed": 2}
        payment.refresh_from_db()
        assert (payment.status, payment.payment_intent_id, payment.invoice.status) == ("succeeded", "pi_cs_b", "paid")
        assert len([c for c in callbacks if "payments.payment_fee_record" in repr(c)]) == 1
        assert not Alert.objects.exists()

    def test_an_invoice_an_earlier_event_of_the_batch_moved_is_still_paid_by_a_later_success(self, user):
        """The invoice read with the batch's Payments is only a guess: one attempt's failure moves it to failed
        before another attempt's success is applied, which still marks it paid (decided on a fresh read)."""
        now = int(time.time())
        invoice = InvoiceFactory(owner=user, amount=2500)
        declined = PaymentFactory(invoice=invoice, payment_intent_id="pi_try1")
        paid = PaymentFactory(invoice=invoice, payment_intent_id="pi_try2")
        failed_evt = fakes.event("payment_intent.payment_failed", fakes.intent(declined, error=fakes.decline_error()))
        self.store(failed_evt | {"created": now - 5})
        self.store(fakes.event("payment_intent.succeeded", fakes.intent(paid, status="succeeded"), created=now))

        result, reads = self.drain()

        assert result.counts == {"processed": 2} and len(reads) == 1
        invoice.refresh_from_db()
        assert invoice.status == "paid"
        assert not Alert.objects.exists()

    def test_a_refund_applied_after_the_batch_read_the_payment_still_refunds_the_invoice_its_success_pays(
        self, payment
    ):
        """The batch read the payment with nothing refunded; an earlier event of the batch then recorded a refund
        (Stripe delivers in any order): the success must not trust the read, the invoice ends refunded."""
        now = int(time.time())
        charge = {
            "id": "ch_hook1",
            "object": "charge",
            "payment_intent": "pi_hook1",
            "amount": payment.amount,
            "currency": payment.currency,
            "amount_refunded": payment.amount,
            "refunded": True,
            "metadata": {},
        }
        self.store(fakes.event("charge.refunded", charge, created=now - 5))
        self.store(fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"), created=now))

        result, _ = self.drain()

        assert result.counts == {"processed": 2}
        payment.refresh_from_db()
        payment.invoice.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("succeeded", payment.amount)
        assert (payment.invoice.status, payment.invoice.amount_refunded) == ("refunded", payment.amount)

    def test_a_poisoned_event_among_successes_leaves_each_success_applied_and_queued_once(
        self, payment, user, django_capture_on_commit_callbacks
    ):
        """Stripe's handlers share one savepoint per batch: the event that raises sends the batch round again
        with a savepoint each, and the successes handled before it are not applied or queued twice."""
        now = int(time.time())
        others = [
            PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id=f"pi_round{i}")
            for i in range(3)
        ]
        self.store(fakes.event("payment_intent.succeeded", fakes.intent(others[0], status="succeeded"), created=now))
        bad = fakes.intent(payment, status="succeeded") | {"metadata": {"hub_payment_id": 12}}
        self.store(fakes.event("payment_intent.succeeded", bad, created=now + 1))
        for i, other in enumerate(others[1:], start=2):
            evt = fakes.event("payment_intent.succeeded", fakes.intent(other, status="succeeded"), created=now + i)
            self.store(evt)

        with django_capture_on_commit_callbacks() as callbacks:
            result, _ = self.drain()

        assert result.counts == {"processed": 3, "failed": 1}
        assert {p.status for p in Payment.objects.filter(pk__in=[o.pk for o in others])} == {"succeeded"}
        assert len([c for c in callbacks if "payments.payment_fee_record" in repr(c)]) == 3
        assert WebhookEvent.objects.get(payload__data__object__id="pi_hook1").attempts == 1
        assert set(WebhookEvent.objects.filter(status="processed").values_list("attempts", flat=True)) == {1}

    def test_a_success_whose_fee_message_is_lost_after_commit_is_left_for_the_outbox_sweeper(
        self, payment, settings, django_capture_on_commit_callbacks
    ):
        """The fee look-up's outbox mark is written with the payment's move (one UPDATE): a worker that dies
        between the batch's commit and its publish leaves the payment due for the sweeper, as before."""
        from django.utils import timezone

        self.store(fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded")))
        started = timezone.now()
        with django_capture_on_commit_callbacks(execute=False):  # committed; the publish never happens
            result, _ = self.drain()

        assert result.counts == {"processed": 1}
        payment.refresh_from_db()
        assert (payment.status, payment.outbox_sweeps) == ("succeeded", 0)
        assert payment.next_attempt_at >= started + dt.timedelta(seconds=settings.OUTBOX_GRACE_SECONDS)

    def test_an_intent_whose_metadata_the_batch_cannot_read_fails_alone(self, payment, user):
        other = PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id="pi_other")
        bad = fakes.intent(payment, status="succeeded") | {"metadata": {"hub_payment_id": 12}}
        self.store(fakes.event("payment_intent.succeeded", bad))
        self.store(fakes.event("payment_intent.succeeded", fakes.intent(other, status="succeeded")))

        result, _ = self.drain()

        assert result.counts == {"failed": 1, "processed": 1}
        other.refresh_from_db()
        assert other.status == "succeeded"
        assert WebhookEvent.objects.get(payload__data__object__id="pi_hook1").status == "failed"


class _BrokerQueues(dict):
    """Celery's queues of these names on the Redis broker (REDIS_URL), as a worker consumes them."""

    def __init__(self, connection, names):
        from kombu import Exchange, Queue

        super().__init__(
            (name, connection.SimpleQueue(Queue(name, Exchange(name), routing_key=name))) for name in names
        )
        self.connection = connection

    def take_in_order(self, names, *, count):
        """The task names of the next `count` messages one consumer of `names` (in that order) takes, acked."""
        from kombu import Consumer

        taken = []

        def got(body, message):
            taken.append(message.headers["task"])
            message.ack()

        with Consumer(self.connection, [self[name].queue for name in names], callbacks=[got], accept=["json"]):
            while len(taken) < count:
                self.connection.drain_events(timeout=5)
        return taken


@contextlib.contextmanager
def broker_queues(*names):
    """_BrokerQueues of `names`, emptied (every priority) before and after."""
    import os

    from kombu import Connection

    import config.celery  # noqa: F401 - installs the redis:// transport alias

    with Connection(os.environ["REDIS_URL"]) as connection:
        queues = _BrokerQueues(connection, names)
        for queue in queues.values():
            queue.clear()
        try:
            yield queues
        finally:
            for queue in queues.values():
                queue.clear()
                queue.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestBatchDrainSends:
    """The tasks a drained batch queues (a fee look-up per success) leave for the broker together, after commit."""

    @pytest.fixture
    def succeeded_events(self, user):
        payments = [
            PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id=f"pi_send{i}")
            for i in range(3)
        ]
        for payment in payments:
            TestBatchDrain.store(fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded")))
        return payments

    @pytest.mark.redis
    def test_they_reach_the_payments_queue_as_one_batch_message_through_one_producer(
        self, succeeded_events, monkeypatch
    ):
        import os

        from integrations.webhooks import webhook_drain
        from payments.tasks import payment_fee_record, payment_fees_record
        from tests.integrations.outbox_kit import broker_at

        sent = []
        for task in (payment_fee_record, payment_fees_record):
            monkeypatch.setattr(
                task,
                "apply_async",
                lambda *args, task=task, original=task.apply_async, **kwargs: (
                    sent.append((task.name, kwargs.get("args"), kwargs.get("producer"))) or original(*args, **kwargs)
                ),
            )
        with broker_queues("payments") as queues:
            with broker_at(os.environ["REDIS_URL"]):
                assert webhook_drain(provider="stripe").counts == {"processed": 3}
            assert queues["payments"].qsize() == 1
        [(name, args, producer)] = sent
        assert name == "payments.payment_fees_record" and producer is not None
        assert sorted(args[0]) == sorted(p.pk for p in succeeded_events)

    @pytest.mark.redis
    def test_a_worker_takes_the_drains_of_a_burst_before_the_fee_look_ups_queued_earlier(self, succeeded_events):
        """Fee look-ups are bookkeeping (BACKGROUND_PRIORITY): a worker that has both waiting takes webhook
        drains (any task without a priority) first, whatever the queues' order, so a burst of events is
        applied before the fee look-ups it queued, not behind them."""
        import os

        from integrations.webhooks import webhook_drain
        from integrations.webhooks.dispatch import request_drain
        from tests.integrations.outbox_kit import broker_at

        with broker_queues("payments", "default") as queues, broker_at(os.environ["REDIS_URL"]):
            assert webhook_drain(provider="stripe").counts == {"processed": 3}  # queues the fee look-ups
            assert request_drain("stripe", force=True)  # then more events arrive: a drain is queued
            # The worker's queues with payments first: without priorities it would take the fee look-ups first.
            taken = queues.take_in_order(["payments", "default"], count=2)
        assert taken == ["integrations.webhook_drain", "payments.payment_fees_record"]

    @pytest.mark.redis
    def test_the_sweeper_sends_an_overdue_fee_look_up_at_the_default_priority(self, succeeded_events):
        """A fee look-up yields to drains only until it is overdue: under a load that never lets up its first
        message could wait for as long as the load lasts; the sweep's copy goes in the priority-0 list."""
        import os

        from django.utils import timezone

        from integrations import outbox
        from integrations.redis import get_client
        from integrations.task_base import redis_queue_lists
        from integrations.webhooks import webhook_drain
        from tests.integrations.outbox_kit import broker_at, broker_down

        with broker_down():
            assert webhook_drain(provider="stripe").counts == {"processed": 3}
        Payment.objects.filter(pk__in=[p.pk for p in succeeded_events]).update(next_attempt_at=timezone.now())
        with broker_queues("payments"), broker_at(os.environ["REDIS_URL"]):
            assert outbox.outbox_sweep()["sent"] == {"payments.payment_fee_record": 3}
            redis = get_client()
            default, *lower = redis_queue_lists("payments")
            assert redis.llen(default) == 3
            assert sum(redis.llen(name) for name in lower) == 0

    def test_a_broker_that_refuses_them_leaves_the_batch_applied_and_the_sweeper_sends_them(self, succeeded_events):
        from django.utils import timezone

        from integrations.webhooks import webhook_drain
        from tests.integrations.outbox_kit import broker_down

        with broker_down():
            assert webhook_drain(provider="stripe").counts == {"processed": 3}
        rows = Payment.objects.filter(pk__in=[p.pk for p in succeeded_events])
        assert {p.status for p in rows} == {"succeeded"}
        assert all(p.next_attempt_at <= timezone.now() for p in rows)  # due now: the next sweep sends them
