"""An invoice voided while its payment is being created leaves no live PaymentIntent behind."""

import json

import pytest
import responses

from integrations.errors import DomainError
from payments.models import Invoice, Payment
from payments.services import invoice_pay, invoice_void

from .factories import InvoiceFactory
from .test_pay import CUSTOMERS_URL, PI_URL

pytestmark = pytest.mark.django_db


def test_a_void_while_the_intent_is_being_created_cancels_it_and_hands_out_no_client_secret(user, http, run_on_commit):
    invoice = InvoiceFactory(owner=user, amount=2500)
    http.post(CUSTOMERS_URL, json={"id": "cus_1", "object": "customer"})

    def create(request):
        # Staff void the invoice while Stripe is creating the intent: the payment row exists, its intent id not yet.
        with run_on_commit():
            invoice_void(invoice=Invoice.objects.get(pk=invoice.pk))
        body = {"id": "pi_race", "object": "payment_intent", "amount": 2500, "currency": "usd",
                "status": "requires_payment_method", "client_secret": "pi_race_secret_xyz", "metadata": {}}  # fmt: skip
        return (200, {"Request-Id": "req_pi"}, json.dumps(body))

    http.add_callback(responses.POST, PI_URL, callback=create)
    http.post(f"{PI_URL}/pi_race/cancel", json={"id": "pi_race", "object": "payment_intent", "status": "canceled"})
    with pytest.raises(DomainError) as info:
        invoice_pay(invoice_id=invoice.pk, owner=user)
    assert info.value.status == 409
    assert [c.request.url for c in http.calls if c.request.url.endswith("/cancel")] == [f"{PI_URL}/pi_race/cancel"]
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.status, payment.payment_intent_id) == ("canceled", "pi_race")
