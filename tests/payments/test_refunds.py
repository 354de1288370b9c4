"""Refunds: staff only, never more than what remains, sent by a task with one Idempotency-Key for every retry."""

import json
import time

import pytest
import responses

from integrations.models import Alert, ProviderCall
from payments.models import Refund

from . import stripe_fakes as fakes
from .factories import SucceededPaymentFactory

pytestmark = pytest.mark.django_db

REFUNDS_URL = f"{fakes.API}/v1/refunds"


@pytest.fixture
def payment(user):
    return SucceededPaymentFactory(invoice__owner=user, invoice__amount=1000, payment_intent_id="pi_paid1")


def refunds_url(payment):
    return f"/api/v1/payments/payments/{payment.pk}/refunds/"


def stripe_refunds(http, status="succeeded"):
    """Stripe: one refund per Idempotency-Key, the same one again for a repeated key."""
    made = {}

    def callback(request):
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        key = request.headers["Idempotency-Key"]
        made.setdefault(key, f"re_{len(made) + 1}")
        body = fakes.refund(
            made[key],
            amount=int(form["amount"]),
            status=status,
            payment_intent=form["payment_intent"],
            hub_refund_id=form["metadata[hub_refund_id]"],
        )
        return (200, {"Request-Id": f"req_{made[key]}"}, json.dumps(body))

    http.add_callback(responses.POST, REFUNDS_URL, callback=callback)
    return made


def test_a_partial_then_a_full_refund_moves_the_invoice_to_partially_refunded_then_refunded(
    staff_client, payment, http, run_on_commit
):
    stripe_refunds(http)
    with run_on_commit():
        response = staff_client.post(
            refunds_url(payment), {"amount": 300, "reason": "requested_by_customer"}, format="json"
        )
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "pending"  # what the client sees before Stripe confirmed
    payment.refresh_from_db()
    payment.invoice.refresh_from_db()
    assert (payment.amount_refunded, payment.invoice.status, payment.invoice.amount_refunded) == (
        300,
        "partially_refunded",
        300,
    )

    with run_on_commit():
        response = staff_client.post(refunds_url(payment), {}, format="json")  # no amount: the rest
    assert response.json()["amount"] == 700
    payment.invoice.refresh_from_db()
    assert (payment.invoice.status, payment.invoice.amount_refunded) == ("refunded", 1000)
    assert list(Refund.objects.order_by("id").values_list("amount", "status", "external_id")) == [
        (300, "succeeded", "re_1"),
        (700, "succeeded", "re_2"),
    ]
    sent = [c.request for c in http.calls]
    assert [r.headers["Idempotency-Key"] for r in sent] == [f"hub-refund-{r.pk}" for r in Refund.objects.order_by("id")]
    assert "amount=300" in sent[0].body and "payment_intent=pi_paid1" in sent[0].body


def test_a_refund_larger_than_what_remains_is_400(staff_client, payment, http):
    Refund.objects.create(payment=payment, amount=800, status="pending", idempotency_key="k")
    response = staff_client.post(refunds_url(payment), {"amount": 201}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "refund_exceeds_remaining" and response.json()["remaining"] == 200
    assert staff_client.post(refunds_url(payment), {"amount": 200}, format="json").status_code == 202


@pytest.mark.parametrize(("currency", "refused", "taken"), [("kwd", 1005, 1010), ("isk", 150, 200)])
def test_a_refund_in_a_step_stripe_refuses_for_its_currency_is_400_before_anything_is_sent(
    staff_client, user, http, run_on_commit, currency, refused, taken
):
    """Stripe takes three-decimal currencies in steps of 10 and ISK in whole krónur, refunds as charges: such a
    refund was accepted (202), then refused by Stripe, failed, and alerted staff."""
    payment = SucceededPaymentFactory(
        invoice__owner=user, invoice__amount=5000, invoice__currency=currency, payment_intent_id="pi_paid1"
    )
    stripe_refunds(http)
    with run_on_commit():
        response = staff_client.post(refunds_url(payment), {"amount": refused}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "refund_amount_invalid" and response.json()["remaining"] == 5000
    assert not Refund.objects.exists() and not http.calls
    with run_on_commit():
        assert staff_client.post(refunds_url(payment), {"amount": taken}, format="json").status_code == 202
    [sent] = [c.request for c in http.calls]
    assert f"amount={taken}" in sent.body and Refund.objects.get().amount == taken


def test_a_failed_refund_no_longer_counts_against_the_remainder(staff_client, payment):
    Refund.objects.create(payment=payment, amount=1000, status="failed", idempotency_key="k")
    assert staff_client.post(refunds_url(payment), {"amount": 1000}, format="json").status_code == 202


def test_a_payment_that_did_not_succeed_cannot_be_refunded(staff_client, payment):
    payment.status = "pending"
    payment.save()
    response = staff_client.post(refunds_url(payment), {"amount": 1}, format="json")
    assert response.status_code == 409


def test_clients_cannot_refund(user_client, payment):
    assert user_client.post(refunds_url(payment), {"amount": 1}, format="json").status_code == 403


def test_stripe_429_and_500_are_retried_with_backoff_and_the_same_idempotency_key(
    staff_client, payment, http, run_on_commit, monkeypatch
):
    from integrations import task_base

    delays = []
    real = task_base.backoff_seconds
    monkeypatch.setattr(task_base, "backoff_seconds", lambda *a, **k: delays.append((a, k)) or real(*a, **k))
    http.post(REFUNDS_URL, json={"error": {"type": "rate_limit_error", "message": "slow down"}}, status=429)
    http.post(REFUNDS_URL, json={"error": {"type": "api_error", "message": "boom"}}, status=500)
    http.post(REFUNDS_URL, json=fakes.refund("re_ok", amount=1000, payment_intent="pi_paid1"))
    with run_on_commit():
        staff_client.post(refunds_url(payment), {}, format="json")
    refund = Refund.objects.get()
    assert (refund.status, refund.external_id) == ("succeeded", "re_ok")
    keys = {c.request.headers["Idempotency-Key"] for c in http.calls}
    assert keys == {f"hub-refund-{refund.pk}"} and len(http.calls) == 3
    calls = ProviderCall.objects.filter(operation="refund.create").order_by("id")
    assert [(c.attempt, c.outcome, c.http_status) for c in calls] == [
        (1, "rate_limited", 429),
        (2, "error", 500),
        (3, "ok", 200),
    ]
    assert all(c.idempotency_key == f"hub-refund-{refund.pk}" for c in calls)
    assert [a[0] for a, _ in delays] == [0, 1]  # exponential: the retry count grows the envelope


def test_a_refund_stripe_refuses_is_not_retried_and_is_marked_failed(staff_client, payment, http, run_on_commit):
    http.post(
        REFUNDS_URL,
        json={
            "error": {
                "type": "invalid_request_error",
                "code": "charge_already_refunded",
                "message": "Charge has already been refunded.",
            }
        },
        status=400,
    )
    with run_on_commit():
        staff_client.post(refunds_url(payment), {"amount": 100}, format="json")
    refund = Refund.objects.get()
    assert refund.status == "failed" and "already been refunded" in refund.failure_reason
    assert len(http.calls) == 1
    assert Alert.objects.filter(kind="task_failed").exists()


def test_a_refund_stripe_never_confirmed_stays_pending_and_counted_until_a_webhook_settles_it(
    staff_client, client, payment, http, run_on_commit
):
    from .test_webhooks import deliver

    for _ in range(4):  # the first attempt and three retries
        http.post(REFUNDS_URL, json={"error": {"type": "api_error", "message": "boom"}}, status=503)
    with run_on_commit():
        staff_client.post(refunds_url(payment), {"amount": 600}, format="json")
    refund = Refund.objects.get()
    assert refund.status == "pending" and "did not confirm" in refund.failure_reason
    assert len(http.calls) == 4
    # Still counted: the remaining 400 is all that can be refunded meanwhile.
    assert staff_client.post(refunds_url(payment), {"amount": 401}, format="json").status_code == 400
    # Stripe had in fact made it; its webhook carries our id in the metadata.
    with run_on_commit():
        deliver(
            client,
            fakes.event(
                "charge.refund.updated",
                fakes.refund("re_late", amount=600, payment_intent="pi_paid1", hub_refund_id=refund.pk),
            ),
        )
    refund.refresh_from_db()
    assert (refund.status, refund.external_id) == ("succeeded", "re_late")


def test_a_redelivered_refund_task_after_success_does_nothing(payment, http):
    from payments.tasks import refund_send

    refund = Refund.objects.create(
        payment=payment, amount=100, status="succeeded", external_id="re_done", idempotency_key="k"
    )
    assert refund_send.apply(args=[refund.pk]).get() == "skipped"
    assert len(http.calls) == 0


def test_charge_refunded_webhook_records_a_refund_made_in_the_dashboard(client, payment, run_on_commit):
    from .test_webhooks import deliver

    charge = {
        "id": "ch_paid1",
        "object": "charge",
        "payment_intent": "pi_paid1",
        "amount": 1000,
        "currency": "usd",
        "amount_refunded": 1000,
        "refunds": {"object": "list", "data": [fakes.refund("re_dash", amount=1000, payment_intent="pi_paid1")]},
    }
    with run_on_commit():
        deliver(client, fakes.event("charge.refunded", charge))
    refund = Refund.objects.get()
    assert (refund.external_id, refund.amount, refund.status) == ("re_dash", 1000, "succeeded")
    payment.invoice.refresh_from_db()
    assert payment.invoice.status == "refunded"


def test_charge_refund_updated_confirms_a_pending_refund_and_ignores_an_older_update(client, payment, run_on_commit):
    from .test_webhooks import deliver

    refund = Refund.objects.create(
        payment=payment, amount=400, status="pending", external_id="re_p", idempotency_key="k"
    )
    now = int(time.time())
    with run_on_commit():
        deliver(
            client,
            fakes.event(
                "charge.refund.updated",
                fakes.refund("re_p", amount=400, status="succeeded", payment_intent="pi_paid1"),
                created=now,
            ),
        )
    with run_on_commit():  # arriving after the newer update was applied
        deliver(
            client,
            fakes.event(
                "charge.refund.updated",
                fakes.refund("re_p", amount=400, status="canceled", payment_intent="pi_paid1"),
                created=now - 20,
            ),
        )
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    payment.invoice.refresh_from_db()
    assert payment.invoice.status == "partially_refunded"


def test_admin_refund_action_queues_a_full_refund(admin_client, payment, http, run_on_commit):
    stripe_refunds(http)
    with run_on_commit():
        response = admin_client.post(
            "/admin/payments/payment/", {"action": "refund_in_full", "_selected_action": [payment.pk]}, follow=True
        )
    assert response.status_code == 200
    assert list(Refund.objects.values_list("amount", "status")) == [(1000, "succeeded")]


def test_a_refund_event_for_another_stripe_refund_carrying_our_id_does_not_settle_ours(client, payment, run_on_commit):
    """Our pending refund is Stripe's re_ours; re_other names it in its metadata but is another refund."""
    from .test_webhooks import deliver

    ours = Refund.objects.create(
        payment=payment, amount=300, status="pending", external_id="re_ours", idempotency_key="k-ours"
    )
    with run_on_commit():
        deliver(
            client,
            fakes.event(
                "charge.refund.updated",
                fakes.refund("re_other", amount=500, payment_intent="pi_paid1", hub_refund_id=ours.pk),
            ),
        )
    ours.refresh_from_db()
    assert (ours.external_id, ours.status, ours.amount) == ("re_ours", "pending", 300)
    # re_other is a refund Stripe made: recorded on its own (it fits the payment), and staff are told.
    other = Refund.objects.get(external_id="re_other")
    assert (other.amount, other.status) == (500, "succeeded")
    assert "re_ours" in Alert.objects.get(kind="payment_anomaly").message


def dashboard_refund(client, *, refund_id, amount, refunded_on_charge, status="succeeded", created=None):
    """A refund made in the Stripe Dashboard as the hub hears of it: the charge.refunded its charge answers
    (amount_refunded only: since API version 2022-11-15 a charge no longer lists its refunds) and the
    refund.created Stripe sends for every refund since 2024-10-28.acacia."""
    from .test_webhooks import deliver

    charge = {
        "id": "ch_paid1",
        "object": "charge",
        "payment_intent": "pi_paid1",
        "amount": 1000,
        "currency": "usd",
        "amount_refunded": refunded_on_charge,
        "refunded": refunded_on_charge == 1000,
        "metadata": {},
    }
    refund = fakes.refund(refund_id, amount=amount, status=status, payment_intent="pi_paid1")
    assert deliver(client, fakes.event("charge.refunded", charge, created=created)).status_code == 200
    assert deliver(client, fakes.event("refund.created", refund, created=created)).status_code == 200


def test_a_refund_through_the_hub_keeps_a_dashboard_refund_in_the_totals(
    client, staff_client, payment, http, run_on_commit
):
    """A Dashboard refund was known only as its charge's amount_refunded: the next refund made through the hub
    recomputed the totals from the hub's own refunds, so 1,000 refunded showed 500 (invoice partially refunded)
    until another charge.refunded came. Stripe's refund.created records it as a refund like the hub's own."""
    stripe_refunds(http)
    with run_on_commit():
        dashboard_refund(client, refund_id="re_dash", amount=500, refunded_on_charge=500)
    with run_on_commit():
        response = staff_client.post(refunds_url(payment), {"amount": 500}, format="json")
    assert response.status_code == 202, response.json()

    payment.refresh_from_db()
    payment.invoice.refresh_from_db()
    assert payment.amount_refunded == 1000
    assert (payment.invoice.status, payment.invoice.amount_refunded) == ("refunded", 1000)
    assert sorted(Refund.objects.values_list("external_id", "amount", "status")) == [
        ("re_1", 500, "succeeded"),
        ("re_dash", 500, "succeeded"),
    ]
    # Nothing remains to refund.
    assert staff_client.post(refunds_url(payment), {"amount": 1}, format="json").status_code == 400


def test_refund_events_record_a_dashboard_refund_once_in_any_order(client, payment, run_on_commit):
    """Stripe delivers events in any order and more than once: the newer refund.updated (succeeded) first, then
    the older refund.created (pending) twice. One row, by the refund's id, and the newer status stays."""
    from .test_webhooks import deliver

    now = int(time.time())
    updated = fakes.event("refund.updated", fakes.refund("re_dash", amount=400, payment_intent="pi_paid1"), created=now)
    created = fakes.event(
        "refund.created",
        fakes.refund("re_dash", amount=400, status="pending", payment_intent="pi_paid1"),
        created=now - 5,
    )
    for evt in (updated, created, created):
        with run_on_commit():
            assert deliver(client, evt).status_code == 200

    assert list(Refund.objects.values_list("external_id", "amount", "status")) == [("re_dash", 400, "succeeded")]
    payment.refresh_from_db()
    payment.invoice.refresh_from_db()
    assert payment.amount_refunded == 400
    assert (payment.invoice.status, payment.invoice.amount_refunded) == ("partially_refunded", 400)


def test_a_dashboard_refund_that_fails_after_it_succeeded_takes_the_invoice_back_to_paid(
    client, payment, run_on_commit
):
    """refund.failed (the card was closed): the money is the merchant's again and the invoice simply paid."""
    from .test_webhooks import deliver

    now = int(time.time())
    with run_on_commit():
        dashboard_refund(client, refund_id="re_dash", amount=1000, refunded_on_charge=1000, created=now - 60)
    payment.invoice.refresh_from_db()
    assert (payment.invoice.status, payment.invoice.amount_refunded) == ("refunded", 1000)

    failed = fakes.refund("re_dash", amount=1000, status="failed", payment_intent="pi_paid1", failure_reason="lost")
    with run_on_commit():
        assert deliver(client, fakes.event("refund.failed", failed, created=now)).status_code == 200

    assert Refund.objects.get().status == "failed"
    payment.refresh_from_db()
    payment.invoice.refresh_from_db()
    assert payment.amount_refunded == 0
    assert (payment.invoice.status, payment.invoice.amount_refunded) == ("paid", 0)
