"""Paying an invoice: PaymentIntent or Checkout, through the real stripe SDK with HTTP intercepted."""

import json
import re

import pytest
import responses

from integrations.models import ProviderCall
from payments.models import Customer, Invoice, Payment

from . import stripe_fakes as fakes
from .factories import InvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db

PI_URL = f"{fakes.API}/v1/payment_intents"
CUSTOMERS_URL = f"{fakes.API}/v1/customers"
CHECKOUT_URL = f"{fakes.API}/v1/checkout/sessions"


def pay_url(invoice):
    return f"/api/v1/payments/invoices/{invoice.pk}/pay/"


@pytest.fixture
def invoice(user):
    return InvoiceFactory(owner=user, amount=2500)


def stripe_customer(http):
    """Stripe creates one customer per distinct Idempotency-Key (the key names the user)."""
    ids = {}

    def callback(request):
        key = request.headers["Idempotency-Key"]
        ids.setdefault(key, f"cus_new{len(ids) + 1}")
        return (200, {"Request-Id": "req_cus"}, json.dumps({"id": ids[key], "object": "customer"}))

    http.add_callback(responses.POST, CUSTOMERS_URL, callback=callback)


def stripe_intent(http):
    """Like Stripe: a repeated Idempotency-Key returns the same intent, a new key a new one."""
    ids = {}

    def callback(request):
        key = request.headers["Idempotency-Key"]
        pi_id = ids.setdefault(key, f"pi_live{len(ids) + 1}")
        body = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": 2500,
            "currency": "usd",
            "status": "requires_payment_method",
            "client_secret": f"{pi_id}_secret_xyz",
            "metadata": {},
        }
        return (200, {"Request-Id": "req_pi"}, json.dumps(body))

    http.add_callback(responses.POST, PI_URL, callback=callback)


def form(call):
    from urllib.parse import parse_qs

    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def test_paying_an_open_invoice_returns_a_payment_intent_client_secret(user_client, invoice, http, user):
    stripe_customer(http)
    stripe_intent(http)
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["client_secret"] == "pi_live1_secret_xyz"
    assert (body["method"], body["amount"], body["currency"], body["publishable_key"]) == (
        "intent",
        2500,
        "usd",
        "pk_test_hub",
    )
    payment = Payment.objects.get()
    assert (payment.status, payment.payment_intent_id, payment.attempt) == ("pending", "pi_live1", 1)
    assert Customer.objects.get(user=user).external_id == "cus_new1"
    sent = form(http.calls[-1])
    assert (sent["amount"], sent["currency"], sent["customer"]) == ("2500", "usd", "cus_new1")
    assert sent["metadata[hub_payment_id]"] == str(payment.pk)
    assert http.calls[-1].request.headers["Authorization"] == f"Bearer {fakes.SECRET_KEY}"
    assert http.calls[-1].request.headers["Idempotency-Key"] == f"hub-invoice-{invoice.pk}-attempt-1"
    calls = ProviderCall.objects.order_by("id")
    assert [(c.operation, c.outcome, c.owner_id) for c in calls] == [
        ("customer.create", "ok", user.pk),
        ("payment_intent.create", "ok", user.pk),
    ]
    assert calls[1].idempotency_key == f"hub-invoice-{invoice.pk}-attempt-1"
    assert calls[1].provider_request_id == "req_pi"


def test_a_double_click_reuses_the_same_attempt_and_idempotency_key(user_client, invoice, http):
    stripe_customer(http)
    stripe_intent(http)  # Stripe answers a repeated Idempotency-Key with the same intent
    first = user_client.post(pay_url(invoice), {}, format="json").json()
    second = user_client.post(pay_url(invoice), {}, format="json").json()
    assert first["client_secret"] == second["client_secret"]
    assert Payment.objects.count() == 1
    keys = [c.request.headers["Idempotency-Key"] for c in http.calls if c.request.url == PI_URL]
    assert keys == [f"hub-invoice-{invoice.pk}-attempt-1"] * 2
    assert len([c for c in http.calls if c.request.url == CUSTOMERS_URL]) == 1  # the customer is created once


def test_a_failed_attempt_is_resumed_with_the_same_intent(user_client, invoice, http):
    PaymentFactory(invoice=invoice, attempt=1, status="failed", payment_intent_id="pi_live1")
    Invoice.objects.filter(pk=invoice.pk).update(status="failed")
    stripe_customer(http)
    stripe_intent(http)
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 200 and response.json()["attempt"] == 1


def test_checkout_returns_a_session_url(user_client, invoice, http, settings):
    settings.STRIPE_CHECKOUT_SUCCESS_URL = "https://hub.example/ok?s={CHECKOUT_SESSION_ID}"
    stripe_customer(http)
    http.post(
        CHECKOUT_URL,
        json={"id": "cs_test_1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_test_1"},
    )
    response = user_client.post(pay_url(invoice), {"method": "checkout"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["checkout_url"] == "https://checkout.stripe.com/c/pay/cs_test_1"
    payment = Payment.objects.get()
    assert (payment.method, payment.checkout_session_id, payment.status) == ("checkout", "cs_test_1", "pending")
    sent = form(http.calls[-1])
    assert sent["mode"] == "payment" and sent["line_items[0][price_data][unit_amount]"] == "2500"
    assert sent["success_url"] == "https://hub.example/ok?s={CHECKOUT_SESSION_ID}"
    assert sent["payment_intent_data[metadata][hub_payment_id]"] == str(payment.pk)


def test_switching_to_checkout_cancels_the_live_intent_first(user_client, invoice, http):
    live = PaymentFactory(invoice=invoice, attempt=1, payment_intent_id="pi_old")
    http.post(f"{PI_URL}/pi_old/cancel", json={"id": "pi_old", "object": "payment_intent", "status": "canceled"})
    stripe_customer(http)
    http.post(
        CHECKOUT_URL, json={"id": "cs_test_2", "object": "checkout.session", "url": "https://checkout.stripe.com/x"}
    )
    assert user_client.post(pay_url(invoice), {"method": "checkout"}, format="json").status_code == 200
    live.refresh_from_db()
    assert live.status == "canceled"
    assert list(invoice.payments.order_by("attempt").values_list("attempt", "status")) == [
        (1, "canceled"),
        (2, "pending"),
    ]


@pytest.mark.parametrize("status", ["paid", "void", "refunded", "draft"])
def test_an_invoice_that_is_not_payable_answers_409(user_client, user, http, status):
    invoice = InvoiceFactory(owner=user, status=status)
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "invoice_not_payable"
    assert len(http.calls) == 0


def test_another_users_invoice_is_404_for_reading_and_paying(user_client, other_user, http):
    theirs = InvoiceFactory(owner=other_user)
    assert user_client.get(f"/api/v1/payments/invoices/{theirs.pk}/").status_code == 404
    assert user_client.post(pay_url(theirs), {}, format="json").status_code == 404
    assert len(http.calls) == 0


def test_the_invoice_list_shows_only_your_own(user_client, user, other_user):
    mine = InvoiceFactory(owner=user)
    InvoiceFactory(owner=other_user)
    results = user_client.get("/api/v1/payments/invoices/").json()["results"]
    assert [r["id"] for r in results] == [mine.pk]
    assert results[0]["amount"] == 2500 and isinstance(results[0]["amount"], int)


def test_pay_is_limited_to_five_requests_a_minute_per_user(
    user_client, client_for, other_user, invoice, http, still_clock
):
    stripe_customer(http)
    stripe_intent(http)
    for _ in range(5):
        assert user_client.post(pay_url(invoice), {}, format="json").status_code == 200
    sixth = user_client.post(pay_url(invoice), {}, format="json")
    assert sixth.status_code == 429
    assert sixth.json()["error"] == "rate_limited" and int(sixth["Retry-After"]) >= 1
    # Another user has their own budget.
    theirs = InvoiceFactory(owner=other_user)
    assert client_for(other_user).post(pay_url(theirs), {}, format="json").status_code == 200


def test_an_unconfigured_stripe_answers_503_naming_the_setting(user_client, invoice, settings, http):
    settings.STRIPE_SECRET_KEY = ""
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 503
    assert response.json()["missing"] == ["STRIPE_SECRET_KEY"]
    assert Payment.objects.count() == 0 and len(http.calls) == 0


def test_stripe_rate_limiting_the_hub_answers_503_with_retry_after_and_pauses_further_calls(user_client, invoice, http):
    stripe_customer(http)
    http.post(
        PI_URL,
        json={"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}},
        status=429,
        headers={"Retry-After": "30"},
    )
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 503
    assert response.json()["error"] == "provider_rate_limited" and response["Retry-After"] == "30"
    assert Payment.objects.get().status == "creating"  # nothing final: the client retries
    again = user_client.post(pay_url(invoice), {}, format="json")
    assert again.status_code == 503 and again.json()["error"] == "rate_limited_outbound"
    assert len([c for c in http.calls if c.request.url == PI_URL]) == 1  # the pause held: Stripe was not asked again


def test_a_stripe_500_answers_502_and_the_clients_retry_reuses_the_idempotency_key(user_client, invoice, http):
    stripe_customer(http)
    http.post(PI_URL, json={"error": {"type": "api_error", "message": "Something went wrong"}}, status=500)
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 502 and response.json()["error"] == "provider_unavailable"
    assert response["Retry-After"] == "5" and response.json()["retry_after"] == 5
    http.replace(
        responses.POST,
        PI_URL,
        json={
            "id": "pi_r",
            "object": "payment_intent",
            "client_secret": "pi_r_secret",
            "status": "requires_payment_method",
        },
    )
    assert user_client.post(pay_url(invoice), {}, format="json").json()["client_secret"] == "pi_r_secret"
    keys = [c.request.headers["Idempotency-Key"] for c in http.calls if c.request.url == PI_URL]
    assert keys == [f"hub-invoice-{invoice.pk}-attempt-1"] * 2
    assert Payment.objects.count() == 1


@pytest.mark.parametrize(
    ("decline_code", "message", "shown_code", "shown_message"),
    [
        ("generic_decline", "Your card was declined.", "generic_decline", "Your card was declined."),
        ("insufficient_funds", "Your card has insufficient funds.", "insufficient_funds", "insufficient funds"),
        # Stripe: a card reported stolen is presented to the customer as a generic decline
        ("stolen_card", "Your card was declined.", "generic_decline", "Your card was declined."),
    ],
)
def test_a_card_decline_is_402_card_declined_for_the_customer_recorded_and_not_retried(
    user_client, invoice, http, decline_code, message, shown_code, shown_message
):
    """A decline is the customer's to act on (another card), not a provider failure to retry later: it was
    answered 502 `provider_rejected`, like Stripe refusing a malformed request, so a client could not tell the
    user their card was declined. Nothing is charged or left half-made: the attempt is failed with the exact
    reason for staff, the invoice stays payable, and the next click is a new attempt."""
    stripe_customer(http)
    http.post(
        PI_URL,
        json=fakes.card_error_body(message=message, decline_code=decline_code),
        status=402,
        headers={"Request-Id": "req_decl"},
    )
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 402, response.json()
    body = response.json()
    assert (body["error"], body["decline_code"], body["provider"]) == ("card_declined", shown_code, "stripe")
    # Stripe's error code, as every other provider error answer carries it (the decline code stays beside it).
    assert body["provider_code"] == "card_declined"
    assert shown_message in body["detail"] and "Retry-After" not in response
    assert decline_code == shown_code or decline_code not in json.dumps(body)
    payment = Payment.objects.get()
    assert (payment.status, payment.failure_code, payment.failure_message) == ("failed", decline_code, message)
    assert Invoice.objects.get(pk=invoice.pk).status == "open"
    call = ProviderCall.objects.get(operation="payment_intent.create")
    assert (call.outcome, call.http_status, call.retryable, call.provider_request_id) == (
        "error",
        402,
        False,
        "req_decl",
    )
    assert len([c for c in http.calls if c.request.url == PI_URL]) == 1

    http.remove(responses.POST, PI_URL)
    stripe_intent(http)  # the customer tries again (another card, in Stripe.js): a new attempt, a new key
    again = user_client.post(pay_url(invoice), {}, format="json")
    assert again.status_code == 200 and again.json()["attempt"] == 2, again.json()


def test_a_card_error_without_a_decline_code_carries_stripes_error_code_as_provider_and_decline_code(
    user_client, invoice, http
):
    """Stripe's expired_card has no decline_code: the answer names it in both, as a client reading either expects."""
    stripe_customer(http)
    http.post(
        PI_URL,
        json=fakes.card_error_body(message="Your card has expired.", decline_code=None, code="expired_card"),
        status=402,
    )
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 402, response.json()
    body = response.json()
    assert (body["error"], body["provider_code"], body["decline_code"]) == (
        "card_declined",
        "expired_card",
        "expired_card",
    )
    assert Payment.objects.get().failure_code == "expired_card"


def test_after_stripe_refused_to_create_the_intent_the_next_click_is_a_new_attempt_with_a_new_key(
    user_client, invoice, http
):
    """Stripe saves the answer to a key once its endpoint ran, a refusal included, and replays it for 24 h.

    The refused attempt (no payment method enabled for the currency, which staff then enable in the
    Dashboard) was reused with its key, so every later click got Stripe's saved refusal again for a day."""
    stripe_customer(http)
    enabled = {"card": False}
    saved = {}

    def create(request):
        key = request.headers["Idempotency-Key"]
        replayed = key in saved
        if not replayed:
            if enabled["card"]:
                body = {
                    "id": "pi_after_fix",
                    "object": "payment_intent",
                    "amount": 2500,
                    "currency": "usd",
                    "status": "requires_payment_method",
                    "client_secret": "pi_after_fix_secret",
                    "metadata": {},
                }
                saved[key] = (200, body)
            else:
                error = {
                    "type": "invalid_request_error",
                    "code": "payment_intent_invalid_parameter",
                    "message": "No valid payment method types for this Payment Intent.",
                }
                saved[key] = (400, {"error": error})
        status, body = saved[key]
        headers = {"Request-Id": "req_pi", **({"Idempotent-Replayed": "true"} if replayed else {})}
        return (status, headers, json.dumps(body))

    http.add_callback(responses.POST, PI_URL, callback=create)
    refused = user_client.post(pay_url(invoice), {}, format="json")
    assert refused.status_code == 502 and refused.json()["error"] == "provider_rejected"

    enabled["card"] = True  # staff fix the account in the Dashboard; the customer clicks again
    response = user_client.post(pay_url(invoice), {}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["attempt"], response.json()["client_secret"]) == (2, "pi_after_fix_secret")
    keys = [c.request.headers["Idempotency-Key"] for c in http.calls if c.request.url == PI_URL]
    assert keys == [f"hub-invoice-{invoice.pk}-attempt-1", f"hub-invoice-{invoice.pk}-attempt-2"]
    assert list(invoice.payments.order_by("attempt").values_list("attempt", "status")) == [
        (1, "canceled"),
        (2, "pending"),
    ]


def test_after_the_customer_is_deleted_in_the_dashboard_the_next_payment_creates_a_new_one(
    client, user_client, invoice, http, run_on_commit
):
    """Stripe refuses a PaymentIntent for a deleted customer (resource_missing). The hub kept the deleted
    customer's id, so the user could never pay again (a 502 on every click); and a create with the first
    customer's Idempotency-Key would only get the deleted customer back from Stripe's 24 h replay."""
    from .test_webhooks import deliver

    stripe_customer(http)
    deleted = set()

    def create_intent(request):
        from urllib.parse import parse_qs

        customer = parse_qs(request.body)["customer"][0]
        if customer in deleted:
            error = {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "customer",
                "message": f"No such customer: '{customer}'",
            }
            return (400, {"Request-Id": "req_pi"}, json.dumps({"error": error}))
        pi_id = f"pi_for_{customer}"
        body = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": 2500,
            "currency": "usd",
            "status": "requires_payment_method",
            "client_secret": f"{pi_id}_secret",
            "customer": customer,
            "metadata": {},
        }
        return (200, {"Request-Id": "req_pi"}, json.dumps(body))

    http.add_callback(responses.POST, PI_URL, callback=create_intent)
    assert user_client.post(pay_url(invoice), {}, format="json").status_code == 200
    first = Customer.objects.get().external_id

    deleted.add(first)
    with run_on_commit():
        gone = {"id": first, "object": "customer", "deleted": True}
        assert deliver(client, fakes.event("customer.deleted", gone)).status_code == 200
    other = InvoiceFactory(owner=invoice.owner, amount=2500)
    response = user_client.post(pay_url(other), {}, format="json")

    assert response.status_code == 200, response.json()
    now = Customer.objects.get(user=invoice.owner).external_id
    assert now not in ("", first)
    assert response.json()["client_secret"] == f"pi_for_{now}_secret"


def test_a_repeated_idempotency_key_replays_the_first_response(user_client, invoice, http):
    stripe_customer(http)
    stripe_intent(http)
    headers = {"HTTP_IDEMPOTENCY_KEY": "click-1"}
    first = user_client.post(pay_url(invoice), {}, format="json", **headers)
    second = user_client.post(pay_url(invoice), {}, format="json", **headers)
    assert second.json() == first.json() and second["Idempotent-Replayed"] == "true"
    assert len([c for c in http.calls if c.request.url == PI_URL]) == 1


def test_the_api_base_setting_points_the_sdk_elsewhere(user_client, invoice, http, settings):
    settings.STRIPE_API_BASE = "http://stripe-mock.local:12111"
    http.post("http://stripe-mock.local:12111/v1/customers", json={"id": "cus_m", "object": "customer"})
    http.post(
        "http://stripe-mock.local:12111/v1/payment_intents",
        json={
            "id": "pi_m",
            "object": "payment_intent",
            "client_secret": "pi_m_secret",
            "status": "requires_payment_method",
        },
    )
    assert user_client.post(pay_url(invoice), {}, format="json").status_code == 200


class TestStaffInvoices:
    def test_staff_create_an_invoice_for_a_user(self, staff_client, user):
        response = staff_client.post(
            "/api/v1/payments/invoices/",
            {"owner": user.pk, "amount": 1999, "currency": "EUR", "description": "Setup"},
            format="json",
        )
        assert response.status_code == 201, response.json()
        invoice = Invoice.objects.get()
        assert (invoice.owner, invoice.amount, invoice.currency, invoice.status) == (user, 1999, "eur", "open")

    def test_a_client_cannot_create_or_void_invoices(self, user_client, user):
        assert (
            user_client.post("/api/v1/payments/invoices/", {"owner": user.pk, "amount": 1}, format="json").status_code
            == 403
        )
        invoice = InvoiceFactory(owner=user)
        assert user_client.post(f"/api/v1/payments/invoices/{invoice.pk}/void/").status_code == 403

    def test_voiding_cancels_the_live_intent_on_stripe(self, staff_client, http, run_on_commit):
        payment = PaymentFactory(payment_intent_id="pi_void")
        http.post(f"{PI_URL}/pi_void/cancel", json={"id": "pi_void", "object": "payment_intent", "status": "canceled"})
        with run_on_commit():
            response = staff_client.post(f"/api/v1/payments/invoices/{payment.invoice_id}/void/")
        assert response.status_code == 200 and response.json()["status"] == "void"
        payment.refresh_from_db()
        assert payment.status == "canceled"
        assert http.calls[0].request.headers["Idempotency-Key"] == f"{payment.idempotency_key}-cancel"

    def test_a_paid_invoice_cannot_be_voided(self, staff_client):
        invoice = InvoiceFactory(status="paid")
        response = staff_client.post(f"/api/v1/payments/invoices/{invoice.pk}/void/")
        assert response.status_code == 409 and response.json()["error"] == "invalid_state"

    def test_an_invoice_stripe_issued_cannot_be_voided_here(self, staff_client, http, run_on_commit):
        # Stripe keeps collecting its own (subscription) invoice: a void here would stop nothing, and the
        # invoice.paid that follows could no longer move a void invoice to paid.
        invoice = InvoiceFactory(external_id="in_sub_7", status="failed")
        with run_on_commit():
            response = staff_client.post(f"/api/v1/payments/invoices/{invoice.pk}/void/")
        assert response.status_code == 409, response.json()
        assert response.json()["error"] == "invalid_state"
        invoice.refresh_from_db()
        assert invoice.status == "failed" and not http.calls


def test_another_users_invoice_is_404_even_when_stripe_is_not_configured(user_client, other_user, settings):
    settings.STRIPE_SECRET_KEY = ""
    theirs = InvoiceFactory(owner=other_user)
    response = user_client.post(pay_url(theirs), {}, format="json")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert user_client.post("/api/v1/payments/invoices/999999/pay/", {}, format="json").status_code == 404


def test_while_stripes_circuit_is_open_pay_answers_503_with_the_remaining_open_time(
    user_client, invoice, http, settings
):
    from integrations import breaker

    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "failure_threshold": 1, "cooldown_seconds": 40.0}
    breaker.after_call("stripe", healthy=False)
    response = user_client.post(pay_url(invoice), {}, format="json")
    assert response.status_code == 503 and response.json()["error"] == "circuit_open"
    assert 38 <= int(response["Retry-After"]) <= 40
    assert len(http.calls) == 0


class TestInvoiceAmounts:
    """An invoice Stripe would refuse is refused when staff create it, naming the field."""

    URL = "/api/v1/payments/invoices/"

    @pytest.mark.parametrize(
        "amount,currency,field,says",
        [
            (1000, "zzz", "currency", "not an ISO 4217 currency"),
            (2147483647, "usd", "amount", "largest charge in USD is 99,999,999"),
            (2**63, "usd", "amount", "less than or equal to"),
            (49, "usd", "amount", "smallest charge in USD is 50"),
            (20, "gbp", "amount", "smallest charge in GBP is 30"),
            (49, "jpy", "amount", "whole JPY"),
            (1005, "kwd", "amount", "must end in 0"),
            (150, "isk", "amount", "whole krónur"),
        ],
    )
    def test_what_stripe_would_refuse_is_a_400_naming_the_field(
        self, staff_client, user, amount, currency, field, says
    ):
        response = staff_client.post(
            self.URL, {"owner": user.pk, "amount": amount, "currency": currency}, format="json"
        )
        assert response.status_code == 400, response.json()
        body = response.json()
        assert body["error"] == "invalid" and field in body["fields"]
        assert says in body["detail"]
        assert not Invoice.objects.exists()

    @pytest.mark.parametrize(
        "amount,currency", [(50, "usd"), (50, "jpy"), (99_999_999, "eur"), (1010, "kwd"), (500, "CLP")]
    )
    def test_amounts_stripe_accepts_create_the_invoice(self, staff_client, user, amount, currency):
        response = staff_client.post(
            self.URL, {"owner": user.pk, "amount": amount, "currency": currency}, format="json"
        )
        assert response.status_code == 201, response.json()
        assert Invoice.objects.get().currency == currency.lower()


def stripe_intent_by_key(http):
    """Like Stripe's idempotency layer: a repeated Idempotency-Key with the same parameters returns the saved
    intent; with other parameters Stripe refuses it (400 idempotency_error) and creates nothing."""
    from urllib.parse import parse_qs

    saved = {}

    def callback(request):
        key = request.headers["Idempotency-Key"]
        params = parse_qs(request.body)
        if key in saved and saved[key][0] != params:
            error = {
                "type": "idempotency_error",
                "message": (
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request."
                ),
            }
            return (400, {"Request-Id": "req_idem"}, json.dumps({"error": error}))
        if key not in saved:
            pi_id = f"pi_live{len(saved) + 1}"
            saved[key] = (
                params,
                {
                    "id": pi_id,
                    "object": "payment_intent",
                    "amount": int(params["amount"][0]),
                    "currency": params["currency"][0],
                    "status": "requires_payment_method",
                    "client_secret": f"{pi_id}_secret_xyz",
                    "description": params.get("description", [None])[0],
                    "metadata": {},
                },
            )
        return (200, {"Request-Id": "req_pi"}, json.dumps(saved[key][1]))

    http.add_callback(responses.POST, PI_URL, callback=callback)
    http.add_callback(
        responses.POST,
        re.compile(rf"{PI_URL}/(pi_live\d+)/cancel"),
        callback=lambda request: (
            200,
            {},
            json.dumps({"id": request.url.split("/")[-2], "object": "payment_intent", "status": "canceled"}),
        ),
    )
    return saved


def test_a_click_after_staff_edit_the_invoice_description_pays_with_a_new_attempt(
    admin_client, user_client, invoice, http
):
    """Stripe refuses an Idempotency-Key sent again with other parameters (idempotency_error). The open pay
    page's attempt was reused with its key and the invoice's new description: every click failed, and the
    attempt, failed but holding an intent, was reused again for 23 h. The customer could not pay."""
    stripe_customer(http)
    stripe_intent_by_key(http)
    assert user_client.post(pay_url(invoice), {}, format="json").status_code == 200

    changed = admin_client.post(
        f"/admin/payments/invoice/{invoice.pk}/change/",
        {
            "number": invoice.number,
            "description": "Consulting, November (corrected)",
            "payments-TOTAL_FORMS": 1,
            "payments-INITIAL_FORMS": 1,
            "payments-0-id": invoice.payments.get().pk,
            "payments-0-invoice": invoice.pk,
        },
    )
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    invoice.refresh_from_db()
    assert invoice.description == "Consulting, November (corrected)"

    response = user_client.post(pay_url(invoice), {}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["attempt"], response.json()["client_secret"]) == (2, "pi_live2_secret_xyz")
    creates = [c.request for c in http.calls if c.request.url == PI_URL]
    assert [r.headers["Idempotency-Key"] for r in creates] == [
        f"hub-invoice-{invoice.pk}-attempt-1",
        f"hub-invoice-{invoice.pk}-attempt-2",
    ]
    assert "corrected" in form(http.calls[-1])["description"]
    assert [c.request.url for c in http.calls if c.request.url.endswith("/cancel")] == [f"{PI_URL}/pi_live1/cancel"]
    assert list(invoice.payments.order_by("attempt").values_list("attempt", "status")) == [
        (1, "canceled"),
        (2, "pending"),
    ]
    # A double click now reuses the new attempt, as before.
    again = user_client.post(pay_url(invoice), {}, format="json")
    assert again.status_code == 200 and again.json()["attempt"] == 2


def test_a_click_after_the_customer_was_deleted_in_the_dashboard_pays_with_a_new_attempt(
    client, user_client, invoice, http, run_on_commit
):
    """The same refusal when the open attempt's customer is deleted in the Dashboard: the hub makes a new
    customer, and the attempt's key sent again with it was Stripe's idempotency_error on every click."""
    from .test_webhooks import deliver

    stripe_customer(http)
    stripe_intent_by_key(http)
    assert user_client.post(pay_url(invoice), {}, format="json").status_code == 200
    with run_on_commit():
        gone = {"id": "cus_new1", "object": "customer", "deleted": True}
        assert deliver(client, fakes.event("customer.deleted", gone)).status_code == 200

    response = user_client.post(pay_url(invoice), {}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["attempt"] == 2
    assert form(http.calls[-1])["customer"] == "cus_new2"


def test_the_schema_says_a_declined_card_is_402_card_declined():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    responses_ = paths["/api/v1/payments/invoices/{id}/pay/"]["post"]["responses"]
    assert "card_declined" in responses_["402"]["description"]
