"""Telling an invoice's owner that a payment failed."""

from django.conf import settings
from django.core.mail import send_mail

from ..models import Invoice


def payment_failed_notify(*, invoice_id, reason):
    """Tell the invoice's owner the payment failed and why (Django's email backend; console in development)."""
    invoice = Invoice.objects.select_related("owner").filter(pk=invoice_id).first()
    if invoice is None or not invoice.owner.email:
        return False
    amount = f"{invoice.amount / 100:.2f} {invoice.currency.upper()}"
    send_mail(
        subject=f"Payment failed for invoice {invoice.number}",
        message=(
            f"Your payment of {amount} for invoice {invoice.number} did not go through.\n\n"
            f"Reason: {reason or 'the payment was declined'}.\n\n"
            "Please try again with another payment method; the invoice is still open."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invoice.owner.email],
    )
    return True
