"""Refunds: requested here, created on Stripe by a task, settled by webhooks or reconciliation."""

from django.db import transaction
from django.db.models import Count, Q, Sum

from integrations.models import ProviderCall
from integrations.registry import require
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from ..currencies import step_problem
from ..models import Invoice, Payment, Refund
from ..providers import stripe as stripe_api
from ..providers.stripe_objects import StripeRefund, stripe_id
from .common import adopt, anomaly_alert, money_differs
from .errors import InvalidTransition, PaymentChargedBack, PaymentDisputed, RefundAmountInvalid, RefundTooLarge
from .settlement import DISPUTE_LOST, DISPUTE_OPEN, charged_back_totals, money_mismatch, payment_for_stripe_object

REFUNDED_STATES = (Invoice.Status.PARTIALLY_REFUNDED, Invoice.Status.REFUNDED)

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
    racing cannot together exceed what was paid. Without Stripe configured nothing is created (503).
    """
    from ..tasks import refund_send

    require(stripe_api.PROVIDER)

    with transaction.atomic():
        payment = Payment.objects.select_for_update().select_related("invoice").get(pk=payment_id)
        if payment.status != Payment.Status.SUCCEEDED:
            raise InvalidTransition(
                f"Payment {payment.pk} is {payment.status}; only a succeeded payment can be refunded."
            )
        refusal = _dispute_refusal(payment)
        if refusal is not None:
            raise refusal
        taken = payment.refunds.filter(status__in=Refund.COUNTED).aggregate(s=Sum("amount"))["s"] or 0
        # Refunds Stripe reported on the charge (charge.refunded's amount_refunded) that have no row of ours
        # yet: a Dashboard refund, whose charge event no longer embeds the refunds list. They count too.
        recorded = payment.refunds.filter(status=Refund.Status.SUCCEEDED).aggregate(s=Sum("amount"))["s"] or 0
        taken += max(0, payment.amount_refunded - recorded)
        remaining = max(0, payment.amount - taken)
        if amount is None:
            amount = remaining
        if amount <= 0 or amount > remaining:
            raise RefundTooLarge(
                f"At most {remaining} ({payment.currency.upper()} minor units) remains refundable on this payment.",
                remaining=remaining,
            )
        problem = step_problem(amount, payment.currency.lower())
        if problem:
            # Stripe refuses it (a 400 the task would give up on, with a staff alert): refused here, nothing written.
            raise RefundAmountInvalid(f"{problem} Nothing was refunded.", remaining=remaining)
        refund = Refund.objects.create(
            payment=payment, amount=amount, reason=reason, requested_by=requested_by, idempotency_key=""
        )
        Refund.objects.filter(pk=refund.pk).update(idempotency_key=f"hub-refund-{refund.pk}")
        refund.idempotency_key = f"hub-refund-{refund.pk}"
        enqueue_on_commit(refund_send, refund.pk)
    return refund


def _dispute_refusal(payment):
    """The refusal (PaymentChargedBack or PaymentDisputed, else None) of a refund Stripe would refuse because of
    a chargeback: raised when one is requested, before anything is written, and the reason a queued one fails
    when a chargeback opened or was lost before it was sent (refund_send).

    Stripe takes the disputed amount from the balance when a chargeback opens and gives it to the cardholder for
    good when it is lost: a refund of a lost one is refused (charge_disputed), and so is one while the chargeback
    is open (the Dispute's is_charge_refundable is false then); the way to give the money back is to accept the
    dispute in the Dashboard. An inquiry (warning_*) takes no money and may be settled by refunding, and a won
    dispute left the charge whole, so both may be refunded. A charged_back invoice is final: no refund of any of
    its payments can be accounted for on it.
    """
    invoice = payment.invoice
    if payment.dispute_status == DISPUTE_LOST:
        why = (
            f"Payment {payment.pk} was charged back: a lost dispute already gave the money back to the cardholder "
            f"(invoice {invoice.number} is {invoice.status}), and Stripe refunds no charged-back charge."
        )
    elif invoice.status == Invoice.Status.CHARGED_BACK:
        why = (
            f"Invoice {invoice.number} was charged back (a lost dispute on another of its payments took its money "
            "back), and a charged-back invoice is final: no refund can be recorded on it."
        )
    else:
        why = ""
    if why:
        return PaymentChargedBack(
            f"{why} Nothing was refunded; settle any difference with the customer outside Stripe's refunds.",
            dispute_status=payment.dispute_status,
            invoice_status=invoice.status,
        )
    if payment.dispute_status in DISPUTE_OPEN:
        return PaymentDisputed(
            f"Payment {payment.pk} has an open chargeback (dispute {payment.dispute_id or 'unknown'} is "
            f"{payment.dispute_status}): Stripe refunds no disputed charge, and the disputed amount is already "
            "withdrawn. To give the money back, accept the dispute in the Stripe Dashboard; to keep it, counter "
            "with evidence. Nothing was refunded.",
            dispute_status=payment.dispute_status,
        )
    return None


def refund_send(*, refund_id):
    """Task body: create the refund on Stripe. Safe to run twice: the same Idempotency-Key returns the same refund.

    A refund a chargeback made unrefundable since it was requested fails here (failure_reason `<code>: <detail>`,
    the code the request's 409 would carry), without asking Stripe, unless an earlier attempt may have reached it.
    """
    refund = Refund.objects.select_related("payment__invoice").filter(pk=refund_id).first()
    if refund is None or refund.external_id or refund.status != Refund.Status.PENDING:
        return "skipped"
    payment = refund.payment
    refusal = _dispute_refusal(payment)
    if refusal is not None and not _maybe_sent(refund):
        # Queued before the chargeback opened or was lost: Stripe would refuse it (charge_disputed), so it is not
        # asked. Failed as a refund Stripe refused is, without that refusal's task_failed alert: the dispute has
        # its own critical alert already, and nothing here needs a person the dispute's alert does not.
        failed = transition(
            Refund,
            refund.pk,
            Refund.Status.FAILED,
            frm=Refund.Status.PENDING,
            where=Q(external_id=""),
            failure_reason=f"{refusal.code}: {refusal.detail}"[:2000],
        )
        return "refused" if failed else "skipped"
    created = stripe_api.refund_create(
        payment_intent=payment.payment_intent_id,
        amount=refund.amount,
        reason=refund.reason,
        metadata={"hub_refund_id": str(refund.pk), "hub_payment_id": str(payment.pk)},
        idempotency_key=refund.idempotency_key,
        owner=payment.invoice.owner_id,
        related=refund,
    )
    Refund.objects.filter(pk=refund.pk, external_id="").update(external_id=created.id)
    refund_apply(refund=refund, stripe_refund=created)
    return "sent"


def _maybe_sent(refund):
    """Whether an earlier attempt at this refund may have reached Stripe (a call is logged for it, whatever its
    outcome). Such a refund may exist there; only Stripe can say (the same Idempotency-Key returns it, or its
    refusal fails it), so it is sent as before rather than failed here, which would free money already refunded."""
    return ProviderCall.objects.filter(
        related_type=Refund._meta.label_lower, related_id=str(refund.pk), operation="refund.create"
    ).exists()


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


def _refund_money_mismatch(*, refund, stripe_refund):
    """A Stripe refund whose amount or currency is not our row's: a critical alert, nothing applied."""
    payment = refund.payment
    return money_differs(
        expected=(refund.amount, payment.currency),
        got=(stripe_refund.amount, stripe_refund.currency),
        subject=f"Stripe refund {stripe_refund.id}",
        ours=f"refund {refund.pk} of payment {payment.pk}",
        dedupe_key=f"payment_anomaly:refund:{refund.pk}",
    )


def refund_apply(*, refund, stripe_refund, occurred_at=None):
    """Apply a StripeRefund's status to our row (after its money is checked), then the payment's refunded totals."""
    if _refund_money_mismatch(refund=refund, stripe_refund=stripe_refund):
        return False
    to = REFUND_STATUS.get(stripe_refund.status)
    changed = False
    if to is not None:
        fields = {"failure_reason": stripe_refund.failure_reason} if to == Refund.Status.FAILED else {}
        changed = transition(Refund, refund.pk, to, occurred_at=occurred_at, **fields)
    _refunded_totals(payment_id=refund.payment_id)
    return changed


def refund_upsert(*, stripe_refund, occurred_at=None):
    """A StripeRefund (ours, or one made in the Dashboard): find or create its row, apply its status."""
    refund = adopt(Refund, external_id=stripe_refund.id, metadata=stripe_refund.metadata, meta_key="hub_refund_id")
    if refund is None:
        payment = payment_for_stripe_object(
            metadata=stripe_refund.metadata,
            payment_intent=stripe_refund.payment_intent_id,
            charge=stripe_refund.charge_id,
        )
        if payment is None:
            return None, False
        if (stripe_refund.currency or "").lower() != payment.currency.lower() or not (
            0 < (stripe_refund.amount or 0) <= payment.amount
        ):
            # A refund made outside the hub (Dashboard) is adopted only if it fits the payment.
            anomaly_alert(
                message=(
                    f"Stripe refund {stripe_refund.id} of {stripe_refund.amount} "
                    f"{stripe_refund.currency} does not fit payment {payment.pk} "
                    f"({payment.amount} {payment.currency}): not recorded."
                ),
                dedupe_key=f"payment_anomaly:refund:{stripe_refund.id}",
            )
            return None, False
        refund = Refund.objects.create(
            payment=payment,
            amount=stripe_refund.amount or 0,
            reason=stripe_refund.reason,
            external_id=stripe_refund.id,
            idempotency_key=f"stripe-{stripe_refund.id}",
        )
    return refund, refund_apply(refund=refund, stripe_refund=stripe_refund, occurred_at=occurred_at)


def _refunded_totals(*, payment_id, stripe_amount_refunded=None):
    """Recompute what is refunded on a payment and its invoice, and move the invoice accordingly."""
    payment = Payment.objects.select_related("invoice").get(pk=payment_id)
    done = payment.refunds.filter(status=Refund.Status.SUCCEEDED).aggregate(s=Sum("amount"))["s"] or 0
    done = min(payment.amount, max(done, stripe_amount_refunded or 0))
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=done)
    invoice = payment.invoice
    # What the invoice has given back is what it no longer holds of its amount: a refund of an extra payment
    # (an invoice paid twice, which the payment_anomaly alert asks staff to refund) leaves it paid.
    settled = invoice.payments.filter(status=Payment.Status.SUCCEEDED).aggregate(
        paid=Sum("amount"), refunded=Sum("amount_refunded"), lost=Count("pk", filter=Q(dispute_status=DISPUTE_LOST))
    )
    refunded = settled["refunded"] or 0
    kept = (settled["paid"] or 0) - refunded
    # Never more than was given back: an invoice no payment has settled yet (a refund reported before the
    # payment's success) holds nothing, yet has refunded nothing either.
    total = min(refunded, invoice.amount, max(0, invoice.amount - kept))
    Invoice.objects.filter(pk=invoice.pk).update(amount_refunded=total)
    # A lost dispute took at most what its payment still held: a refund reported after the loss (made before it,
    # events arrive in any order) lowers what the loss took, and the invoice stays charged_back only if it took any.
    if settled["lost"] and charged_back_totals(invoice_id=invoice.pk) == Invoice.Status.CHARGED_BACK:
        return
    not_charged_back = ~Q(status=Invoice.Status.CHARGED_BACK)  # only charged_back_totals decides to leave it
    if total >= invoice.amount and total > 0:
        transition(Invoice, invoice.pk, Invoice.Status.REFUNDED, where=not_charged_back)
    elif total > 0:
        transition(Invoice, invoice.pk, Invoice.Status.PARTIALLY_REFUNDED, where=not_charged_back)
    else:  # every refund failed after all: the invoice is simply paid again
        transition(Invoice, invoice.pk, Invoice.Status.PAID, where=Q(status__in=REFUNDED_STATES))


def charge_refunded_apply(*, charge, occurred_at=None):
    """A charge.refunded event's charge (the event's own payload: the hub reads charges only from webhooks).

    Its embedded refunds go through refund_upsert as StripeRefunds, like any other refund.
    """
    payment = payment_for_stripe_object(
        metadata=charge.get("metadata"), payment_intent=stripe_id(charge.get("payment_intent")), charge=charge.get("id")
    )
    if payment is None:
        return None
    if money_mismatch(
        payment=payment,
        amount=charge.get("amount"),
        currency=charge.get("currency"),
        source=f"charge {charge.get('id')}",
    ):
        # Our metadata on a charge for other money: its id, refunds and amount_refunded are not this payment's.
        return None
    if charge.get("id"):
        Payment.objects.filter(pk=payment.pk, charge_id="").update(charge_id=charge["id"])
    for stripe_refund in (charge.get("refunds") or {}).get("data") or []:
        refund_upsert(stripe_refund=StripeRefund.from_stripe(stripe_refund), occurred_at=occurred_at)
    _refunded_totals(payment_id=payment.pk, stripe_amount_refunded=charge.get("amount_refunded"))
    return payment
