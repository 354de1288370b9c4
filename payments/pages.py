"""Where Stripe Checkout sends the customer back: small pages that read the payment's state from the hub.

The query string only names the Checkout session; whether the invoice is paid
comes from our own rows (set by signed webhooks and reconciliation), never
from the URL, so a hand-edited link cannot show "paid".
"""

import re

from django.shortcuts import render
from django.views.decorators.http import require_GET

from .currencies import format_amount
from .models import Invoice, Payment

_SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,200}$")


@require_GET
def checkout_success(request):
    session_id = request.GET.get("session_id", "")
    payment = None
    if _SESSION_ID.match(session_id):
        payment = Payment.objects.select_related("invoice").filter(checkout_session_id=session_id).first()
    if payment is None:
        return render(request, "payments/checkout_return.html", {"state": "unknown"}, status=404)
    invoice = payment.invoice
    if invoice.status == Invoice.Status.PAID:
        state = "paid"
    elif invoice.status in (Invoice.Status.REFUNDED, Invoice.Status.PARTIALLY_REFUNDED):
        state = "refunded"  # paid, then refunded: final, not a payment still to confirm
    elif invoice.status == Invoice.Status.CHARGED_BACK:
        state = "charged_back"  # paid, then taken back through the card issuer: not a payment still to confirm
    elif payment.status in (Payment.Status.FAILED, Payment.Status.CANCELED) or invoice.status == Invoice.Status.VOID:
        state = "not_paid"
    else:
        state = "confirming"  # the customer is back before Stripe's webhook: look again shortly
    context = {"state": state, "invoice": invoice, "amount": format_amount(invoice.amount, invoice.currency)}
    return render(request, "payments/checkout_return.html", context)


@require_GET
def checkout_cancel(request):
    return render(request, "payments/checkout_return.html", {"state": "cancelled"})
