"""Telling an invoice's owner that a payment failed: a task, so the send is retried and logged as a ProviderCall."""

from integrations.email import mail_send
from integrations.task_base import enqueue_on_commit

from ..currencies import format_amount
from ..models import Invoice


def payment_failed_notify_later(*, invoice_id, reason):
    """Queue the notice once the transaction that recorded the failure commits."""
    from ..tasks import payment_failed_notify as task

    enqueue_on_commit(task, invoice_id, reason)


def invoices_for_notice(*, invoice_ids):
    """The invoices payment_failed_notify reads, with their owners, in one query: {pk: Invoice} of those that exist."""
    return Invoice.objects.select_related("owner").in_bulk(invoice_ids)


def payment_failed_notify(*, invoice_id, reason, invoice=None, connection=None):
    """Tell the invoice's owner the payment failed and why (Django's email backend; console in development),
    unless the invoice can no longer be paid by the time this runs (then False, nothing sent).

    `invoice`: the row when the caller read it for this run (invoices_for_notice, for a batch); else read here.
    `connection`: the batch's mail connection (integrations.email.mail_connection)."""
    invoice = invoice or Invoice.objects.select_related("owner").filter(pk=invoice_id).first()
    if invoice is None or not invoice.owner.email:
        return False
    if invoice.status not in Invoice.PAYABLE:
        # Paid since (a declined card retried with success: Stripe sends both events within seconds, and a
        # drained batch applies them together), refunded or void: "the invoice is still open, please try
        # again" would be false, and could make the owner pay twice.
        return False
    amount = format_amount(invoice.amount, invoice.currency)
    mail_send(
        subject=f"Payment failed for invoice {invoice.number}",
        message=(
            f"Your payment of {amount} for invoice {invoice.number} did not go through.\n\n"
            f"Reason: {reason or 'the payment was declined'}.\n\n"
            "Please try again with another payment method; the invoice is still open."
        ),
        to=[invoice.owner.email],
        owner=invoice.owner_id,
        related=invoice,
        connection=connection,
    )
    return True
