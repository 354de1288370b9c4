"""Invoices and paying them: a PaymentIntent or a Checkout Session per attempt, reused while fresh."""

import datetime as dt
import hashlib
import json

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.errors import DomainError, PermanentError
from integrations.registry import require
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from ..models import Customer, Invoice, Payment, Subscription
from ..providers import stripe as stripe_api
from .customers import customer_ensure
from .errors import InvalidTransition, InvoiceNotPayable
from .notify import payment_failed_notify_later

# Stripe keeps an Idempotency-Key for 24 h; reuse an attempt only well within that.
INTENT_REUSE_WINDOW = dt.timedelta(hours=23)


def invoice_create(*, owner, amount, currency, description="", due_date=None, status=Invoice.Status.OPEN):
    return Invoice.objects.create(
        owner=owner, amount=amount, currency=currency.lower(), description=description, due_date=due_date, status=status
    )


def invoice_void(*, invoice):
    """Void an unpaid invoice; any live Stripe payment for it is cancelled by a task."""
    from ..tasks import payment_cancel

    with transaction.atomic():
        if invoice.status == Invoice.Status.VOID:
            return invoice
        if invoice.external_id:
            # Stripe issued it (a subscription) and keeps collecting it: a void here stops nothing there, and
            # the invoice.paid that follows could no longer mark it paid (void is final).
            raise InvalidTransition(
                f"Invoice {invoice.number} was issued by Stripe, which collects it; void it on Stripe instead."
            )
        if not transition(Invoice, invoice.pk, Invoice.Status.VOID):
            invoice.refresh_from_db()
            raise InvalidTransition(f"Invoice {invoice.number} is {invoice.status} and cannot be voided.")
        live = list(invoice.payments.filter(status__in=Payment.LIVE).values_list("pk", flat=True))
        for pk in live:
            enqueue_on_commit(payment_cancel, pk)
    invoice.refresh_from_db()
    return invoice


def _no_such_invoice():
    return DomainError(404, "not_found", "No such invoice of yours.")


def _payment_key(invoice, attempt):
    return f"hub-invoice-{invoice.pk}-attempt-{attempt}"


def _stripe_description(invoice):
    """The PaymentIntent's description (a Checkout Session's product name): what the customer's receipt shows."""
    return invoice.description or f"Invoice {invoice.number}"


def _params_digest(*, invoice, customer):
    """What an attempt's create sends Stripe beside its amount and currency, as a digest kept on the attempt.

    Stripe keeps the parameters a key was first used with and refuses the key with any others
    (idempotency_error), so an attempt is resumed only while the invoice's text (its description, its number in
    the metadata) and the Stripe customer are still those it was created with. Staff may edit the text in
    admin, and a customer deleted in the Dashboard is made again under a new id.
    """
    sent = json.dumps([_stripe_description(invoice), invoice.number, customer])
    return hashlib.sha256(sent.encode()).hexdigest()


def _choose_attempt(*, invoice_id, owner, method, customer):
    """Under the invoice's row lock: the attempt to (re)use, and live attempts of another kind to cancel.

    `customer`: the Stripe customer this click pays as (customer_ensure, before the lock)."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().filter(pk=invoice_id, owner=owner).first()
        if invoice is None:
            raise _no_such_invoice()
        if invoice.status not in Invoice.PAYABLE:
            raise InvoiceNotPayable(
                f"Invoice {invoice.number} is {invoice.status}; there is nothing to pay.", status=invoice.status
            )
        if invoice.external_id:
            # Stripe issued it (a subscription) and collects it itself: an intent of ours would charge twice.
            raise InvoiceNotPayable(
                f"Invoice {invoice.number} was issued by Stripe, which collects it; pay it on Stripe's invoice page.",
                status=invoice.status,
            )
        fresh_after = timezone.now() - INTENT_REUSE_WINDOW
        # Blank: never sent (the digest is stamped before the create), so its key is still free to use.
        same_params = ("", _params_digest(invoice=invoice, customer=customer))
        reuse, stale = None, []
        for payment in invoice.payments.filter(status__in=Payment.LIVE).order_by("-attempt"):
            same = (
                payment.method == method
                and payment.amount == invoice.amount
                and payment.currency == invoice.currency
                and payment.params_digest in same_params
            )
            # An attempt Stripe refused to create has no object there to resume, and its key would only
            # replay the refusal (Stripe keeps the answer to a key for 24 h): the next click is a new attempt.
            refused = payment.status == Payment.Status.FAILED and not (
                payment.payment_intent_id or payment.checkout_session_id
            )
            if reuse is None and same and not refused and payment.created_at > fresh_after:
                reuse = payment
            else:
                stale.append(payment)
        if reuse is None:
            last = invoice.payments.order_by("-attempt").values_list("attempt", flat=True).first() or 0
            reuse = Payment.objects.create(
                invoice=invoice,
                method=method,
                attempt=last + 1,
                amount=invoice.amount,
                currency=invoice.currency,
                idempotency_key=_payment_key(invoice, last + 1),
            )
    return invoice, reuse, stale


def _payment_cancel_on_stripe(payment, *, owner=None):
    key = f"{payment.idempotency_key}-cancel"
    if payment.checkout_session_id:
        stripe_api.checkout_session_expire(
            payment.checkout_session_id, idempotency_key=key, owner=owner, related=payment
        )
    elif payment.payment_intent_id:
        stripe_api.payment_intent_cancel(payment.payment_intent_id, idempotency_key=key, owner=owner, related=payment)
    transition(Payment, payment.pk, Payment.Status.CANCELED)


def invoice_pay(*, invoice_id, owner, method=Payment.Method.INTENT):
    """Start (or resume) paying an invoice: a PaymentIntent client_secret or a Checkout URL.

    A double click reuses the same attempt, whose Idempotency-Key makes Stripe
    return the same PaymentIntent (or Session) instead of creating another,
    so one invoice never has two live intents. Switching method cancels the
    other live attempt first.
    """
    if not Invoice.objects.filter(pk=invoice_id, owner=owner).exists():
        raise _no_such_invoice()  # another user's invoice is 404 whatever the configuration
    require(stripe_api.PROVIDER)
    # The customer first, so every click of a burst compares attempts against the same one: read inside the
    # lock, the first payment's customer was "" for a click that came before the other click stamped its
    # attempt with the new customer's id, and that click took the attempt for stale, cancelled it and began
    # another (two live attempts of a double click). An invoice that cannot be paid makes no customer.
    payable = Invoice.objects.filter(pk=invoice_id, status__in=Invoice.PAYABLE, external_id="").exists()
    customer = customer_ensure(user=owner) if payable else ""
    invoice, payment, stale = _choose_attempt(invoice_id=invoice_id, owner=owner, method=method, customer=customer)
    for old in stale:
        _payment_cancel_on_stripe(old, owner=owner)
    # Only a new attempt's: a resumed one keeps the digest of what its key was first sent with.
    Payment.objects.filter(pk=payment.pk, params_digest="").update(
        params_digest=_params_digest(invoice=invoice, customer=customer)
    )
    metadata = {
        "hub_invoice_id": str(invoice.pk),
        "hub_payment_id": str(payment.pk),
        "hub_invoice_number": invoice.number,
    }
    try:
        if method == Payment.Method.CHECKOUT:
            session = stripe_api.checkout_session_create(
                amount=payment.amount,
                currency=payment.currency,
                customer=customer,
                product_name=_stripe_description(invoice),
                metadata=metadata,
                success_url=settings.STRIPE_CHECKOUT_SUCCESS_URL,
                cancel_url=settings.STRIPE_CHECKOUT_CANCEL_URL,
                idempotency_key=payment.idempotency_key,
                owner=owner,
                related=payment,
            )
            Payment.objects.filter(pk=payment.pk, checkout_session_id="").update(checkout_session_id=session.id)
            transition(Payment, payment.pk, Payment.Status.PENDING)
            result = {"checkout_url": session.url, "checkout_session_id": session.id}
        else:
            intent = stripe_api.payment_intent_create(
                amount=payment.amount,
                currency=payment.currency,
                customer=customer,
                metadata=metadata,
                description=_stripe_description(invoice),
                idempotency_key=payment.idempotency_key,
                owner=owner,
                related=payment,
            )
            Payment.objects.filter(pk=payment.pk, payment_intent_id="").update(payment_intent_id=intent.id)
            transition(Payment, payment.pk, Payment.Status.PENDING)
            result = {"client_secret": intent.client_secret, "payment_intent_id": intent.id}
    except PermanentError as exc:
        # A refusal (card declined, invalid request) is final for this attempt;
        # the next click starts a new attempt with a new key.
        transition(
            Payment, payment.pk, Payment.Status.FAILED, failure_code=(exc.code or "")[:64], failure_message=exc.message
        )
        raise
    payment.refresh_from_db()
    voided = Invoice.objects.filter(pk=invoice.pk, status=Invoice.Status.VOID).exists()
    if payment.status == Payment.Status.CANCELED or voided:
        # Voided (or replaced by another method) while Stripe created it: that cancel found no Stripe id yet
        # and only cancelled here. Cancel what Stripe just made (same key as that cancel) and hand out nothing.
        _payment_cancel_on_stripe(payment, owner=owner)
        raise InvoiceNotPayable(
            f"Invoice {invoice.number} was voided or its payment replaced meanwhile; there is nothing to pay.",
            status=Invoice.objects.values_list("status", flat=True).get(pk=invoice.pk),
        )
    return payment, {
        "invoice": invoice.pk,
        "payment": payment.pk,
        "method": method,
        "attempt": payment.attempt,
        "amount": payment.amount,
        "currency": payment.currency,
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        **result,
    }


def payment_cancel(*, payment_id):
    """Task body: cancel a live attempt on Stripe (its invoice was voided)."""
    payment = Payment.objects.select_related("invoice").filter(pk=payment_id, status__in=Payment.LIVE).first()
    if payment is None:
        return "skipped"
    _payment_cancel_on_stripe(payment, owner=payment.invoice.owner)
    return "canceled"


def stripe_invoice_apply(*, data, paid, occurred_at=None):
    """A Stripe-issued invoice (subscriptions): mirror it as our Invoice and move it to paid or failed."""
    customer = Customer.objects.filter(external_id=data.get("customer") or "-").select_related("user").first()
    if customer is None:
        return None, False
    sub_id = data.get("subscription")
    if not sub_id:
        details = ((data.get("parent") or {}).get("subscription_details")) or {}
        sub_id = details.get("subscription")
    if isinstance(sub_id, dict):
        sub_id = sub_id.get("id")
    invoice, _ = Invoice.objects.get_or_create(
        external_id=data["id"],
        defaults={
            "owner": customer.user,
            "number": data.get("number") or data["id"],
            "description": data.get("description") or "Subscription invoice",
            "amount": data.get("amount_due") or data.get("total") or 0,
            "currency": data.get("currency") or "usd",
            "status": Invoice.Status.OPEN,
            "subscription": Subscription.objects.filter(external_id=sub_id).first() if sub_id else None,
        },
    )
    if paid:
        changed = transition(Invoice, invoice.pk, Invoice.Status.PAID, paid_at=occurred_at or timezone.now())
    else:
        changed = transition(Invoice, invoice.pk, Invoice.Status.FAILED)
        if changed:
            error = ((data.get("last_finalization_error") or {}).get("message")) or "the card was declined"
            payment_failed_notify_later(invoice_id=invoice.pk, reason=error)
    return invoice, changed
