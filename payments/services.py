"""What the payments app does (writes). Views, tasks, admin, webhooks and the
reconcile command all call these; none of them talks to Stripe directly.

Provider calls never run inside `transaction.atomic()`: short locked sections
decide what to do and write the row first, then the call happens, then the
result is stamped on the row.
"""

import datetime as dt
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from integrations.alerts import alert_raise
from integrations.errors import DomainError, PermanentError
from integrations.models import Alert
from integrations.registry import require
from integrations.states import transition

from .models import Customer, Invoice, Payment, ReconciliationRun, Refund, Subscription
from .providers import stripe as stripe_api

logger = logging.getLogger(__name__)

# Stripe keeps an Idempotency-Key for 24 h; reuse an attempt only well within that.
INTENT_REUSE_WINDOW = dt.timedelta(hours=23)


class PaymentsError(DomainError):
    """A payments refusal: the subclass fixes the HTTP status and the stable code; the caller gives the sentence."""

    status = 400
    code = "invalid"

    def __init__(self, detail, **extra):
        super().__init__(type(self).status, type(self).code, detail, **extra)


class InvoiceNotPayable(PaymentsError):
    status = 409
    code = "invoice_not_payable"


class InvalidTransition(PaymentsError):
    status = 409
    code = "invalid_state"


class RefundTooLarge(PaymentsError):
    status = 400
    code = "refund_exceeds_remaining"


class OperationPending(PaymentsError):
    status = 409
    code = "operation_pending"


def _ts(value):
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if isinstance(value, int | float) and value else None


# --- Customers ------------------------------------------------------------


def customer_ensure(*, user):
    """The user's Stripe customer id, creating the customer once (idempotently) on first use."""
    customer, _ = Customer.objects.get_or_create(user=user)
    if customer.external_id:
        return customer.external_id
    data = stripe_api.customer_create(
        email=user.email,
        name=user.get_full_name(),
        user_id=user.pk,
        # Two first payments racing create one Stripe customer, not two.
        idempotency_key=f"hub-customer-user-{user.pk}",
        owner=user,
    )
    Customer.objects.filter(pk=customer.pk, external_id="").update(external_id=data["id"])
    customer.refresh_from_db()
    return customer.external_id


# --- Invoices -------------------------------------------------------------


def invoice_create(*, owner, amount, currency, description="", due_date=None, status=Invoice.Status.OPEN):
    return Invoice.objects.create(
        owner=owner, amount=amount, currency=currency.lower(), description=description, due_date=due_date, status=status
    )


def invoice_void(*, invoice):
    """Void an unpaid invoice; any live Stripe payment for it is cancelled by a task."""
    from .tasks import payment_cancel

    with transaction.atomic():
        if invoice.status == Invoice.Status.VOID:
            return invoice
        if not transition(Invoice, invoice.pk, Invoice.Status.VOID):
            invoice.refresh_from_db()
            raise InvalidTransition(f"Invoice {invoice.number} is {invoice.status} and cannot be voided.")
        live = list(invoice.payments.filter(status__in=Payment.LIVE).values_list("pk", flat=True))
        for pk in live:
            transaction.on_commit(lambda pk=pk: payment_cancel.delay(pk))
    invoice.refresh_from_db()
    return invoice


def _no_such_invoice():
    return DomainError(404, "not_found", "No such invoice of yours.")


def _payment_key(invoice, attempt):
    return f"hub-invoice-{invoice.pk}-attempt-{attempt}"


def _choose_attempt(*, invoice_id, owner, method):
    """Under the invoice's row lock: the attempt to (re)use, and live attempts of another kind to cancel."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().filter(pk=invoice_id, owner=owner).first()
        if invoice is None:
            raise _no_such_invoice()
        if invoice.status not in Invoice.PAYABLE:
            raise InvoiceNotPayable(
                f"Invoice {invoice.number} is {invoice.status}; there is nothing to pay.", status=invoice.status
            )
        fresh_after = timezone.now() - INTENT_REUSE_WINDOW
        reuse, stale = None, []
        for payment in invoice.payments.filter(status__in=Payment.LIVE).order_by("-attempt"):
            same = (
                payment.method == method and payment.amount == invoice.amount and payment.currency == invoice.currency
            )
            if reuse is None and same and payment.created_at > fresh_after:
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
    invoice, payment, stale = _choose_attempt(invoice_id=invoice_id, owner=owner, method=method)
    for old in stale:
        _payment_cancel_on_stripe(old, owner=owner)
    customer = customer_ensure(user=owner)
    metadata = {
        "hub_invoice_id": str(invoice.pk),
        "hub_payment_id": str(payment.pk),
        "hub_invoice_number": invoice.number,
    }
    try:
        if method == Payment.Method.CHECKOUT:
            data = stripe_api.checkout_session_create(
                amount=payment.amount,
                currency=payment.currency,
                customer=customer,
                product_name=invoice.description or f"Invoice {invoice.number}",
                metadata=metadata,
                success_url=settings.STRIPE_CHECKOUT_SUCCESS_URL,
                cancel_url=settings.STRIPE_CHECKOUT_CANCEL_URL,
                idempotency_key=payment.idempotency_key,
                owner=owner,
                related=payment,
            )
            Payment.objects.filter(pk=payment.pk, checkout_session_id="").update(checkout_session_id=data["id"])
            transition(Payment, payment.pk, Payment.Status.PENDING)
            result = {"checkout_url": data.get("url"), "checkout_session_id": data["id"]}
        else:
            data = stripe_api.payment_intent_create(
                amount=payment.amount,
                currency=payment.currency,
                customer=customer,
                metadata=metadata,
                description=invoice.description or f"Invoice {invoice.number}",
                idempotency_key=payment.idempotency_key,
                owner=owner,
                related=payment,
            )
            Payment.objects.filter(pk=payment.pk, payment_intent_id="").update(payment_intent_id=data["id"])
            transition(Payment, payment.pk, Payment.Status.PENDING)
            result = {"client_secret": data["client_secret"], "payment_intent_id": data["id"]}
    except PermanentError as exc:
        # A refusal (card declined, invalid request) is final for this attempt;
        # the next click starts a new attempt with a new key.
        transition(
            Payment, payment.pk, Payment.Status.FAILED, failure_code=(exc.code or "")[:64], failure_message=exc.message
        )
        raise
    payment.refresh_from_db()
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


# --- What Stripe tells us (webhooks and reconciliation share these) -------

INTENT_STATUS = {
    "requires_payment_method": Payment.Status.PENDING,
    "requires_confirmation": Payment.Status.PENDING,
    "requires_action": Payment.Status.PENDING,
    "processing": Payment.Status.PROCESSING,
    "requires_capture": Payment.Status.PROCESSING,
    "succeeded": Payment.Status.SUCCEEDED,
    "canceled": Payment.Status.CANCELED,
}


def payment_for_stripe_object(obj):
    """The Payment a PaymentIntent / Checkout Session / charge belongs to, by our metadata or Stripe's ids."""
    meta = obj.get("metadata") or {}
    rows = Payment.objects.select_related("invoice__owner")
    if meta.get("hub_payment_id", "").isdigit():
        found = rows.filter(pk=int(meta["hub_payment_id"])).first()
        if found:
            return found
    object_type = obj.get("object")
    if object_type == "payment_intent":
        return rows.filter(payment_intent_id=obj.get("id")).first()
    if object_type == "checkout.session":
        return rows.filter(checkout_session_id=obj.get("id")).first()
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    if intent:
        found = rows.filter(payment_intent_id=intent).first()
        if found:
            return found
    if object_type == "charge":
        return rows.filter(charge_id=obj.get("id")).first()
    charge = obj.get("charge")
    return rows.filter(charge_id=charge).first() if charge else None


def payment_apply(*, payment, to, occurred_at=None, failure_code="", failure_message="", intent_id="", charge_id=""):
    """Move a payment (and its invoice) to what Stripe reports; True if anything changed.

    Never backwards: the state machine refuses succeeded -> failed, and an
    event older than the newest one applied is stale.
    """
    if intent_id:
        Payment.objects.filter(pk=payment.pk, payment_intent_id="").update(payment_intent_id=intent_id)
    if charge_id:
        Payment.objects.filter(pk=payment.pk, charge_id="").update(charge_id=charge_id)
    fields = {}
    if to == Payment.Status.FAILED:
        fields = {"failure_code": (failure_code or "")[:64], "failure_message": failure_message or ""}
    moved = transition(Payment, payment.pk, to, occurred_at=occurred_at, **fields)
    if not moved:
        return False
    invoice = payment.invoice
    if to == Payment.Status.SUCCEEDED:
        if not transition(Invoice, invoice.pk, Invoice.Status.PAID, paid_at=occurred_at or timezone.now()):
            _alert_money_on_settled_invoice(payment=payment, invoice_id=invoice.pk)
        from .tasks import payment_fee_record

        transaction.on_commit(lambda: payment_fee_record.delay(payment.pk))
    elif to == Payment.Status.FAILED:
        transition(Invoice, invoice.pk, Invoice.Status.FAILED)
        transaction.on_commit(
            lambda: payment_failed_notify(invoice_id=invoice.pk, reason=failure_message or failure_code)
        )
    return True


def _alert_money_on_settled_invoice(*, payment, invoice_id):
    """Money arrived for an invoice that is already paid (by another payment) or void: staff must refund one."""
    invoice = Invoice.objects.get(pk=invoice_id)
    other_paid = Payment.objects.filter(invoice_id=invoice_id, status=Payment.Status.SUCCEEDED).exclude(pk=payment.pk)
    if invoice.status != Invoice.Status.VOID and not other_paid.exists():
        return  # paid by this very payment earlier (a replay): nothing wrong
    alert_raise(
        kind=Alert.Kind.PAYMENT_ANOMALY,
        provider="stripe",
        severity=Alert.Severity.CRITICAL,
        message=(
            f"Invoice {invoice.number} is {invoice.status} but payment {payment.pk} "
            f"({payment.payment_intent_id or payment.checkout_session_id}) also succeeded; refund the extra payment."
        ),
        dedupe_key=f"payment_anomaly:{payment.pk}",
    )


def payment_apply_intent(*, intent, occurred_at=None, forced_status=None):
    """Apply a PaymentIntent object (from an event or a list) to its Payment."""
    payment = payment_for_stripe_object(intent)
    if payment is None:
        return None, False
    to = forced_status or INTENT_STATUS.get(intent.get("status"))
    error = intent.get("last_payment_error") or {}
    if forced_status is None and to == Payment.Status.PENDING and error:
        to = Payment.Status.FAILED  # requires_payment_method after a decline
    if to is None:
        return payment, False
    charge = intent.get("latest_charge")
    changed = payment_apply(
        payment=payment,
        to=to,
        occurred_at=occurred_at,
        failure_code=error.get("decline_code") or error.get("code") or "",
        failure_message=error.get("message") or "",
        intent_id=intent.get("id", ""),
        charge_id=charge.get("id") if isinstance(charge, dict) else (charge or ""),
    )
    return payment, changed


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


def payment_fee_record(*, payment_id):
    """Task body: record Stripe's fee for a succeeded payment on a `charge` ProviderCall (once)."""
    payment = Payment.objects.select_related("invoice").filter(pk=payment_id).first()
    if (
        payment is None
        or payment.fee_recorded
        or payment.status != Payment.Status.SUCCEEDED
        or not payment.payment_intent_id
    ):
        return "skipped"
    data = stripe_api.charge_fee_record(
        payment.payment_intent_id,
        amount=payment.amount,
        currency=payment.currency,
        owner=payment.invoice.owner_id,
        related=payment,
    )
    charge = data.get("latest_charge")
    charge_id = charge.get("id") if isinstance(charge, dict) else (charge or "")
    Payment.objects.filter(pk=payment.pk).update(fee_recorded=True)
    if charge_id:
        Payment.objects.filter(pk=payment.pk, charge_id="").update(charge_id=charge_id)
    return "recorded"


def dispute_record(*, dispute):
    payment = payment_for_stripe_object(dispute)
    if payment is not None:
        Payment.objects.filter(pk=payment.pk, disputed_at__isnull=True).update(disputed_at=timezone.now())
    where = f"invoice {payment.invoice.number}" if payment else f"charge {dispute.get('charge')}"
    amount = dispute.get("amount")
    currency = (dispute.get("currency") or "").upper()
    alert_raise(
        kind=Alert.Kind.DISPUTE,
        provider=stripe_api.PROVIDER,
        severity=Alert.Severity.CRITICAL,
        message=(
            f"Stripe dispute {dispute.get('id')} on {where}: {amount} {currency} (minor units), "
            f"reason {dispute.get('reason') or 'unknown'}. Respond in the Stripe Dashboard before the deadline."
        ),
        dedupe_key=f"dispute:{dispute.get('id')}",
    )
    return payment


# --- Refunds --------------------------------------------------------------

REFUND_STATUS = {
    "pending": Refund.Status.PENDING,
    "requires_action": Refund.Status.PENDING,
    "succeeded": Refund.Status.SUCCEEDED,
    "failed": Refund.Status.FAILED,
    "canceled": Refund.Status.CANCELED,
}


def refund_request(*, payment_id, amount=None, reason="", requested_by=None):
    """Create a pending refund (full when amount is None) and send it to Stripe from a task.

    The payment row is locked while the remainder is checked, so two refunds
    racing cannot together exceed what was paid.
    """
    from .tasks import refund_send

    with transaction.atomic():
        payment = Payment.objects.select_for_update().select_related("invoice").get(pk=payment_id)
        if payment.status != Payment.Status.SUCCEEDED:
            raise InvalidTransition(
                f"Payment {payment.pk} is {payment.status}; only a succeeded payment can be refunded."
            )
        taken = payment.refunds.filter(status__in=Refund.COUNTED).aggregate(s=Sum("amount"))["s"] or 0
        remaining = payment.amount - taken
        if amount is None:
            amount = remaining
        if amount <= 0 or amount > remaining:
            raise RefundTooLarge(
                f"At most {remaining} ({payment.currency.upper()} minor units) remains refundable on this payment.",
                remaining=remaining,
            )
        refund = Refund.objects.create(
            payment=payment, amount=amount, reason=reason, requested_by=requested_by, idempotency_key=""
        )
        Refund.objects.filter(pk=refund.pk).update(idempotency_key=f"hub-refund-{refund.pk}")
        refund.idempotency_key = f"hub-refund-{refund.pk}"
        transaction.on_commit(lambda: refund_send.delay(refund.pk))
    return refund


def refund_send(*, refund_id):
    """Task body: create the refund on Stripe. Safe to run twice: the same Idempotency-Key returns the same refund."""
    refund = Refund.objects.select_related("payment__invoice").filter(pk=refund_id).first()
    if refund is None or refund.external_id or refund.status != Refund.Status.PENDING:
        return "skipped"
    payment = refund.payment
    data = stripe_api.refund_create(
        payment_intent=payment.payment_intent_id,
        amount=refund.amount,
        reason=refund.reason,
        metadata={"hub_refund_id": str(refund.pk), "hub_payment_id": str(payment.pk)},
        idempotency_key=refund.idempotency_key,
        owner=payment.invoice.owner_id,
        related=refund,
    )
    Refund.objects.filter(pk=refund.pk, external_id="").update(external_id=data["id"])
    refund_apply(refund=refund, stripe_refund=data)
    return "sent"


def refund_give_up(*, refund_id, error):
    """The task's last attempt failed. Stripe refused it: failed. Stripe never answered: it may exist there.

    An unconfirmed refund stays `pending` (still counted against the
    remainder, so nobody refunds the same money twice); the refund webhook or
    reconciliation settles it by the hub_refund_id in its metadata.
    """
    rows = Refund.objects.filter(pk=refund_id, status=Refund.Status.PENDING, external_id="")
    if getattr(error, "retryable", False):
        rows.update(
            failure_reason=f"Stripe did not confirm this refund ({error}); reconciliation will settle it."[:2000]
        )
    else:
        transition(
            Refund,
            refund_id,
            Refund.Status.FAILED,
            frm=Refund.Status.PENDING,
            where=Q(external_id=""),
            failure_reason=str(error)[:2000],
        )


def refund_apply(*, refund, stripe_refund, occurred_at=None):
    to = REFUND_STATUS.get(stripe_refund.get("status"))
    changed = False
    if to is not None:
        fields = {"failure_reason": stripe_refund.get("failure_reason") or ""} if to == Refund.Status.FAILED else {}
        changed = transition(Refund, refund.pk, to, occurred_at=occurred_at, **fields)
    _refunded_totals(payment_id=refund.payment_id)
    return changed


def refund_upsert(*, stripe_refund, occurred_at=None):
    """A refund Stripe reports (ours, or one made in the Dashboard): find or create its row, apply its status."""
    refund = Refund.objects.filter(external_id=stripe_refund["id"]).first()
    meta = stripe_refund.get("metadata") or {}
    if refund is None and str(meta.get("hub_refund_id", "")).isdigit():
        refund = Refund.objects.filter(pk=int(meta["hub_refund_id"])).first()
        if refund is not None:
            Refund.objects.filter(pk=refund.pk, external_id="").update(external_id=stripe_refund["id"])
    if refund is None:
        payment = payment_for_stripe_object(stripe_refund)
        if payment is None:
            return None, False
        refund = Refund.objects.create(
            payment=payment,
            amount=stripe_refund.get("amount") or 0,
            reason=stripe_refund.get("reason") or "",
            external_id=stripe_refund["id"],
            idempotency_key=f"stripe-{stripe_refund['id']}",
        )
    return refund, refund_apply(refund=refund, stripe_refund=stripe_refund, occurred_at=occurred_at)


def _refunded_totals(*, payment_id, stripe_amount_refunded=None):
    """Recompute what is refunded on a payment and its invoice, and move the invoice accordingly."""
    payment = Payment.objects.select_related("invoice").get(pk=payment_id)
    done = payment.refunds.filter(status=Refund.Status.SUCCEEDED).aggregate(s=Sum("amount"))["s"] or 0
    done = min(payment.amount, max(done, stripe_amount_refunded or 0))
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=done)
    invoice = payment.invoice
    total = min(
        invoice.amount, (invoice.payments.exclude(pk=payment.pk).aggregate(s=Sum("amount_refunded"))["s"] or 0) + done
    )
    Invoice.objects.filter(pk=invoice.pk).update(amount_refunded=total)
    if total >= invoice.amount and total > 0:
        transition(Invoice, invoice.pk, Invoice.Status.REFUNDED)
    elif total > 0:
        transition(Invoice, invoice.pk, Invoice.Status.PARTIALLY_REFUNDED)


def charge_refunded_apply(*, charge, occurred_at=None):
    payment = payment_for_stripe_object(charge)
    if payment is None:
        return None
    if charge.get("id"):
        Payment.objects.filter(pk=payment.pk, charge_id="").update(charge_id=charge["id"])
    for stripe_refund in (charge.get("refunds") or {}).get("data") or []:
        refund_upsert(stripe_refund=stripe_refund, occurred_at=occurred_at)
    _refunded_totals(payment_id=payment.pk, stripe_amount_refunded=charge.get("amount_refunded"))
    return payment


# --- Subscriptions --------------------------------------------------------

SUBSCRIPTION_STATUS = {s.value for s in Subscription.Status} - {"pending", "failed"}


def subscription_request(*, owner, price_id):
    """Create a pending subscription row; a task creates it on Stripe."""
    from .tasks import subscription_send

    with transaction.atomic():
        sub = Subscription.objects.create(
            owner=owner, price_id=price_id, pending_operation=Subscription.Operation.CREATE, operation_seq=1
        )
        transaction.on_commit(lambda: subscription_send.delay(sub.pk))
    return sub


def _subscription_operation(*, subscription_id, operation, price_id=""):
    from .tasks import subscription_send

    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription_id)
        if sub.pending_operation:
            raise OperationPending(f"Subscription {sub.pk} already has a {sub.pending_operation} waiting for Stripe.")
        if not sub.external_id or sub.status in ("canceled", "incomplete_expired", "failed"):
            raise InvalidTransition(f"Subscription {sub.pk} is {sub.status}; it cannot be changed.")
        Subscription.objects.filter(pk=sub.pk).update(
            pending_operation=operation, pending_price_id=price_id, operation_seq=sub.operation_seq + 1, last_error=""
        )
        transaction.on_commit(lambda: subscription_send.delay(sub.pk))
    sub.refresh_from_db()
    return sub


def subscription_change_price(*, subscription_id, price_id):
    return _subscription_operation(
        subscription_id=subscription_id, operation=Subscription.Operation.CHANGE_PRICE, price_id=price_id
    )


def subscription_cancel(*, subscription_id, at_period_end):
    op = Subscription.Operation.CANCEL_AT_PERIOD_END if at_period_end else Subscription.Operation.CANCEL_NOW
    return _subscription_operation(subscription_id=subscription_id, operation=op)


def _period_end(data):
    end = data.get("current_period_end")
    if end is None:  # newer API versions keep it per item
        items = (data.get("items") or {}).get("data") or []
        end = items[0].get("current_period_end") if items else None
    return _ts(end)


def _price_of(data):
    items = (data.get("items") or {}).get("data") or []
    price = items[0].get("price") if items else None
    return price.get("id") if isinstance(price, dict) else price


def subscription_apply(*, sub, data, occurred_at=None):
    """Apply a Stripe subscription object to our row: status by the state machine, fields unless stale."""
    changed = False
    to = data.get("status")
    if to in SUBSCRIPTION_STATUS:
        changed = transition(Subscription, sub.pk, to, occurred_at=occurred_at)
    rows = Subscription.objects.filter(pk=sub.pk)
    if occurred_at is not None:
        rows = rows.exclude(last_event_at__gt=occurred_at)
    fields = {
        "current_period_end": _period_end(data),
        "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
    }
    if _price_of(data):
        fields["price_id"] = _price_of(data)
    if stripe_api.subscription_item_id(data):
        fields["item_id"] = stripe_api.subscription_item_id(data)
    if occurred_at is not None:
        fields["last_event_at"] = occurred_at
    changed = bool(rows.update(**fields)) or changed
    return changed


def subscription_send(*, subscription_id):
    """Task body: carry out the subscription's pending operation on Stripe, once."""
    sub = Subscription.objects.select_related("owner").filter(pk=subscription_id).first()
    if sub is None or not sub.pending_operation:
        return "skipped"
    op, key = sub.pending_operation, sub.operation_key
    owner = sub.owner
    if op == Subscription.Operation.CREATE:
        customer = customer_ensure(user=owner)
        data = stripe_api.subscription_create(
            customer=customer,
            price_id=sub.price_id,
            metadata={"hub_subscription_id": str(sub.pk)},
            idempotency_key=key,
            owner=owner,
            related=sub,
        )
        Subscription.objects.filter(pk=sub.pk, external_id="").update(external_id=data["id"])
    elif op == Subscription.Operation.CHANGE_PRICE:
        item = sub.item_id or stripe_api.subscription_item_id(
            stripe_api.subscription_retrieve(sub.external_id, owner=owner)
        )
        data = stripe_api.subscription_change_price(
            sub.external_id, item_id=item, price_id=sub.pending_price_id, idempotency_key=key, owner=owner, related=sub
        )
    elif op == Subscription.Operation.CANCEL_AT_PERIOD_END:
        data = stripe_api.subscription_cancel_at_period_end(
            sub.external_id, idempotency_key=key, owner=owner, related=sub
        )
    else:
        data = stripe_api.subscription_cancel_now(sub.external_id, idempotency_key=key, owner=owner, related=sub)
    subscription_apply(sub=sub, data=data)
    Subscription.objects.filter(pk=sub.pk, pending_operation=op).update(pending_operation="", pending_price_id="")
    return op


def subscription_give_up(*, subscription_id, error):
    sub = Subscription.objects.filter(pk=subscription_id).first()
    if sub is None:
        return
    Subscription.objects.filter(pk=sub.pk).update(
        pending_operation="", pending_price_id="", last_error=str(error)[:2000]
    )
    # Only a refusal proves Stripe has no subscription; after timeouts it may
    # exist, and its webhook (carrying hub_subscription_id) will fill the row in.
    if sub.pending_operation == Subscription.Operation.CREATE and not getattr(error, "retryable", False):
        transition(Subscription, sub.pk, Subscription.Status.FAILED)


def subscription_upsert(*, data, occurred_at=None):
    """A subscription Stripe reports: ours by id or metadata, or one created elsewhere for a known customer."""
    sub = Subscription.objects.filter(external_id=data["id"]).first()
    meta = data.get("metadata") or {}
    if sub is None and str(meta.get("hub_subscription_id", "")).isdigit():
        sub = Subscription.objects.filter(pk=int(meta["hub_subscription_id"])).first()
        if sub is not None:
            Subscription.objects.filter(pk=sub.pk, external_id="").update(external_id=data["id"])
    if sub is None:
        customer = Customer.objects.filter(external_id=data.get("customer") or "-").select_related("user").first()
        if customer is None:
            return None, False
        sub = Subscription.objects.create(
            owner=customer.user,
            external_id=data["id"],
            price_id=_price_of(data) or "",
            status=Subscription.Status.PENDING,
        )
    return sub, subscription_apply(sub=sub, data=data, occurred_at=occurred_at)


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
            transaction.on_commit(lambda: payment_failed_notify(invoice_id=invoice.pk, reason=error))
    return invoice, changed


# --- Reconciliation -------------------------------------------------------


def _pages(list_fn, *, created_gte, max_pages):
    after = None
    for _ in range(max_pages):
        page = list_fn(created_gte=created_gte, starting_after=after)
        items = page.get("data") or []
        yield from items
        if not page.get("has_more") or not items:
            return
        after = items[-1]["id"]


def reconcile_stripe(*, hours=72, max_pages=50):
    """List recent PaymentIntents and refunds on Stripe and repair local state a missed webhook left behind."""
    require(stripe_api.PROVIDER)
    since = timezone.now() - dt.timedelta(hours=hours)
    run = ReconciliationRun.objects.create(since=since)
    fixes, checked = [], 0
    try:
        for intent in _pages(stripe_api.payment_intent_list, created_gte=since.timestamp(), max_pages=max_pages):
            checked += 1
            before = payment_for_stripe_object(intent)
            if before is None:
                continue
            old = before.status
            payment, changed = payment_apply_intent(intent=intent)
            if changed:
                payment.refresh_from_db()
                fixes.append({"payment": payment.pk, "intent": intent["id"], "from": old, "to": payment.status})
        for stripe_refund in _pages(stripe_api.refund_list, created_gte=since.timestamp(), max_pages=max_pages):
            checked += 1
            old = Refund.objects.filter(external_id=stripe_refund["id"]).values_list("status", flat=True).first()
            refund, changed = refund_upsert(stripe_refund=stripe_refund)
            if changed:
                refund.refresh_from_db()
                fixes.append(
                    {"refund": refund.pk, "stripe_refund": stripe_refund["id"], "from": old, "to": refund.status}
                )
    except Exception as exc:
        ReconciliationRun.objects.filter(pk=run.pk).update(
            finished_at=timezone.now(), checked=checked, fixed=len(fixes), fixes=fixes, error=str(exc)[:2000]
        )
        raise
    ReconciliationRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(), checked=checked, fixed=len(fixes), fixes=fixes
    )
    run.refresh_from_db()
    if fixes:
        logger.warning("stripe reconciliation repaired local state", extra={"fixed": len(fixes)})
    return run
