"""What Stripe tells us about a payment (webhooks and reconciliation share these): status, fee, disputes."""

from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from integrations import outbox
from integrations.alerts import alert_raise, alert_resolve
from integrations.models import Alert
from integrations.states import allowed, transition
from integrations.task_base import enqueue_marked_on_commit

from ..models import Invoice, Payment
from ..providers import stripe as stripe_api
from ..providers.stripe_objects import stripe_id
from .common import anomaly_alert, money_differs
from .notify import payment_failed_notify_later

INTENT_STATUS = {
    "requires_payment_method": Payment.Status.PENDING,
    "requires_confirmation": Payment.Status.PENDING,
    "requires_action": Payment.Status.PENDING,
    "processing": Payment.Status.PROCESSING,
    "requires_capture": Payment.Status.PROCESSING,
    "succeeded": Payment.Status.SUCCEEDED,
    "canceled": Payment.Status.CANCELED,
}


def _payment_rows():
    # With the invoice, whose state the handlers move with the payment's; not its owner (a user row of a dozen
    # columns to build per payment): no handler of a Stripe event reads it (issue 11, CPU per event).
    return Payment.objects.select_related("invoice")


def _hub_payment_pk(metadata):
    """Our Payment's pk from a Stripe object's metadata (`hub_payment_id`, set when we created it), or None."""
    value = (metadata or {}).get("hub_payment_id", "")
    return int(value) if value.isdigit() else None


def payment_for_stripe_object(*, metadata, payment_intent="", checkout_session="", charge=""):
    """The Payment a Stripe object belongs to: by our hub_payment_id in its metadata, else by the Stripe ids it names.

    The ids are tried in this order; pass those the object carries (a PaymentIntent its own id, a
    Checkout Session its own id, a refund, charge or dispute its payment_intent and charge).
    """
    rows = _payment_rows()
    pk = _hub_payment_pk(metadata)
    if pk is not None:
        found = rows.filter(pk=pk).first()
        if found:
            return found
    for field, value in (
        ("payment_intent_id", payment_intent),
        ("checkout_session_id", checkout_session),
        ("charge_id", charge),
    ):
        # Never look up by "": every payment not yet sent to Stripe has that id.
        found = rows.filter(**{field: value}).first() if value else None
        if found:
            return found
    return None


def money_mismatch(*, payment, amount, currency, source):
    """True, with a critical payment_anomaly alert, when Stripe's amount or currency is not the payment's.

    A signed event is genuine, but it may be about the wrong money: a
    PaymentIntent for 1 JPY carrying our metadata must not mark a 1,000.00 USD
    invoice paid. Nothing is applied; staff look at the alert. A missing amount
    or currency counts as a mismatch (it cannot be checked).
    """
    return money_differs(
        expected=(payment.amount, payment.currency),
        got=(amount, currency),
        subject=f"Stripe {source}",
        ours=f"payment {payment.pk} (invoice {payment.invoice_id})",
        dedupe_key=f"payment_anomaly:amount:{payment.pk}",
    )


def payment_apply(*, payment, to, occurred_at=None, failure_code="", failure_message="", intent_id="", charge_id=""):
    """Move a payment (and its invoice) to what Stripe reports; True if anything changed.

    Never backwards: the state machine refuses succeeded -> failed, and an
    event older than the newest one applied is stale.
    """
    # `payment` was read in this transaction: an id it already has is never taken away, so no UPDATE for it.
    if intent_id and not payment.payment_intent_id:
        Payment.objects.filter(pk=payment.pk, payment_intent_id="").update(payment_intent_id=intent_id)
    if charge_id and not payment.charge_id:
        Payment.objects.filter(pk=payment.pk, charge_id="").update(charge_id=charge_id)
    fields = {}
    if to == Payment.Status.FAILED:
        fields = {"failure_code": (failure_code or "")[:64], "failure_message": failure_message or ""}
    if to == Payment.Status.SUCCEEDED:
        # The fee look-up's outbox mark goes with the move: one UPDATE of the row, not two (issue 11).
        fields = outbox.enqueued_fields()
    # A success that finds nothing refunded yet (nearly all of them) learns it from its own UPDATE's condition,
    # checked under the row's lock, instead of reading amount_refunded again after the move (issue 11).
    unrefunded = False
    if to == Payment.Status.SUCCEEDED and allowed(Payment, payment.status, to) and not payment.amount_refunded:
        unrefunded = transition(
            Payment, payment.pk, to, occurred_at=occurred_at, seen=payment.status, where=Q(amount_refunded=0), **fields
        )
    moved = unrefunded or transition(Payment, payment.pk, to, occurred_at=occurred_at, seen=payment.status, **fields)
    if not moved:
        return False
    # The states just written become the next guesses of whoever applies another event to this same object (a
    # drained batch hands it to each of its events about the payment, payments.webhooks.prefetch_payments).
    # Only guesses: every transition checks the row's state in its UPDATE and decides afresh when it is wrong,
    # so a write rolled back later (a handler's savepoint) costs a query, never a move.
    payment.status = to
    invoice = payment.invoice
    if to == Payment.Status.SUCCEEDED:
        paid_at = occurred_at or timezone.now()
        # Only from a payable state: a refunded invoice may go back to paid (a refund failed), never because
        # money came in again. The invoice read with the payment is a guess; a stale one is decided afresh.
        payable = Q(status__in=Invoice.PAYABLE)
        if not transition(
            Invoice, invoice.pk, Invoice.Status.PAID, paid_at=paid_at, where=payable, seen=invoice.status
        ):
            _alert_money_on_settled_invoice(payment=payment, invoice_id=invoice.pk)
        else:
            invoice.status = Invoice.Status.PAID
            refunded = 0 if unrefunded else Payment.objects.values_list("amount_refunded", flat=True).get(pk=payment.pk)
            if refunded:
                # Stripe reported a refund of this payment before its success (events arrive in any order):
                # the invoice it just paid has already given that money back.
                from .refunds import _refunded_totals

                _refunded_totals(payment_id=payment.pk, stripe_amount_refunded=refunded)
        from ..tasks import payment_fee_record

        enqueue_marked_on_commit(payment_fee_record, payment.pk)
    elif to == Payment.Status.FAILED:
        if transition(Invoice, invoice.pk, Invoice.Status.FAILED, seen=invoice.status):
            invoice.status = Invoice.Status.FAILED
        payment_failed_notify_later(invoice_id=invoice.pk, reason=failure_message or failure_code)
    return True


def _alert_money_on_settled_invoice(*, payment, invoice_id):
    """Money arrived for an invoice that is already paid (by another payment) or void: staff must refund one."""
    invoice = Invoice.objects.get(pk=invoice_id)
    other_paid = Payment.objects.filter(invoice_id=invoice_id, status=Payment.Status.SUCCEEDED).exclude(pk=payment.pk)
    if invoice.status != Invoice.Status.VOID and not other_paid.exists():
        return  # paid by this very payment earlier (a replay): nothing wrong
    anomaly_alert(
        message=(
            f"Invoice {invoice.number} is {invoice.status} but payment {payment.pk} "
            f"({payment.payment_intent_id or payment.checkout_session_id}) also succeeded; refund the extra payment."
        ),
        dedupe_key=f"payment_anomaly:{payment.pk}",
    )


def payment_for_intent(intent):
    """The Payment a StripePaymentIntent belongs to."""
    return payment_for_stripe_object(metadata=intent.metadata, payment_intent=intent.id)


def payments_for_intents(intents):
    """payment_for_intent of each StripePaymentIntent, in one query: {intent id: Payment} of those found.

    For a batch of webhook events (payments.webhooks.prefetch_payments): the
    same rows, found the same way (our hub_payment_id first, then the
    intent's id), as one query per event would find.
    """
    wanted = {}
    for intent in intents:
        try:
            pk = _hub_payment_pk(intent.metadata)
        except AttributeError:  # a hub_payment_id that is not a string: payment_for_intent fails on it alone
            continue
        if intent.id:
            wanted[intent.id] = pk
    if not wanted:
        return {}
    pks = {pk for pk in wanted.values() if pk is not None}
    rows = _payment_rows().filter(Q(pk__in=pks) | Q(payment_intent_id__in=wanted))
    by_pk, by_intent = {}, {}
    for payment in rows:
        by_pk[payment.pk] = payment
        if payment.payment_intent_id:
            by_intent[payment.payment_intent_id] = payment  # unique (payment_unique_intent)
    found = {}
    for intent_id, pk in wanted.items():
        payment = by_pk.get(pk) or by_intent.get(intent_id)
        if payment is not None:
            found[intent_id] = payment
    return found


def payment_apply_intent(*, intent, occurred_at=None, forced_status=None, payment=None):
    """Apply a StripePaymentIntent (from an event or a list) to its Payment.

    `payment`: its Payment when the caller already read it in this
    transaction (payments_for_intents, for a batch of events); else it is
    looked up here.
    """
    payment = payment or payment_for_intent(intent)
    if payment is None:
        return None, False
    if money_mismatch(
        payment=payment, amount=intent.amount, currency=intent.currency, source=f"PaymentIntent {intent.id}"
    ):
        return payment, False
    to = forced_status or INTENT_STATUS.get(intent.status)
    error = intent.last_payment_error
    if forced_status is None and to == Payment.Status.PENDING and error:
        to = Payment.Status.FAILED  # requires_payment_method after a decline
    if to is None:
        return payment, False
    changed = payment_apply(
        payment=payment,
        to=to,
        occurred_at=occurred_at,
        failure_code=error.code if error else "",
        failure_message=error.message if error else "",
        intent_id=intent.id,
        charge_id=intent.charge_id,
    )
    return payment, changed


def payments_for_fee_record(*, payment_ids):
    """The payments payment_fee_record reads, in one query: {pk: Payment} of those that exist."""
    return Payment.objects.select_related("invoice").in_bulk(payment_ids)


def payment_fee_record(*, payment_id, payment=None):
    """Task body: record Stripe's fee for a succeeded payment on a `charge` ProviderCall (once).

    `payment`: the row when the caller read it for this run (payments_for_fee_record, for a batch); else read here.
    """
    payment = payment or Payment.objects.select_related("invoice").filter(pk=payment_id).first()
    if (
        payment is None
        or payment.fee_recorded
        or payment.status != Payment.Status.SUCCEEDED
        or not payment.payment_intent_id
    ):
        return "skipped"
    fee = stripe_api.charge_fee_record(
        payment.payment_intent_id,
        amount=payment.amount,
        currency=payment.currency,
        owner=payment.invoice.owner_id,
        related=payment,
    )
    changes = {"fee_recorded": True}
    if fee.charge_id:  # only where no charge id is known yet, in the same statement
        changes["charge_id"] = Case(When(charge_id="", then=Value(fee.charge_id)), default=F("charge_id"))
    Payment.objects.filter(pk=payment.pk).update(**changes)
    return "recorded"


# Where a Stripe dispute ends (the Dispute's `status`). An inquiry (warning_needs_response, warning_under_review)
# takes no money and ends warning_closed unless it becomes a chargeback; a chargeback (needs_response,
# under_review) withdraws the amount at once (charge.dispute.funds_withdrawn) and ends won (the money is reinstated,
# charge.dispute.funds_reinstated) or lost (it is gone for good); prevented is one stopped before it became a
# chargeback. Until a chargeback is decided the hub's invoice stays paid: Stripe gives the money back if it is won.
DISPUTE_CLOSED = frozenset({"won", "lost", "warning_closed", "prevented"})
# A chargeback not yet decided: its amount is withdrawn, and Stripe refunds no charge in this state.
DISPUTE_OPEN = frozenset({"needs_response", "under_review"})
DISPUTE_LOST = "lost"


def dispute_record(*, dispute, occurred_at=None, opened=False):
    """Any charge.dispute.* event (its own payload: disputes reach the hub only by webhook); `opened` for .created.

    The payment records the dispute's status and amount from the newest event, a closed dispute never reopens and
    a lost one never changes (Stripe's outcome is final: a `won` after it is not believed), so events in any order
    and more than once leave what Stripe decided. Staff get a critical alert to respond when a dispute opens; when
    it closes that alert is resolved. A lost one takes the money back from the invoice (status charged_back,
    amount_charged_back) and opens its own critical alert.
    """
    payment = payment_for_stripe_object(
        metadata=dispute.get("metadata"),
        payment_intent=stripe_id(dispute.get("payment_intent")),
        charge=stripe_id(dispute.get("charge")),
    )
    dispute_id = dispute.get("id") or ""
    status = dispute.get("status") or ""
    amount = dispute.get("amount")
    amount = amount if isinstance(amount, int) and not isinstance(amount, bool) and amount > 0 else 0
    changed = True  # a dispute on a charge the hub does not know: the event's word is all there is
    invoice_status = None
    if payment is not None:
        Payment.objects.filter(pk=payment.pk, disputed_at__isnull=True).update(disputed_at=timezone.now())
        if status:
            status, changed = _dispute_status_write(
                payment_id=payment.pk, dispute_id=dispute_id, status=status, amount=amount, occurred_at=occurred_at
            )
        if status == DISPUTE_LOST:
            # Every time, not only when the status changed: the same totals again change nothing.
            invoice_status = charged_back_totals(invoice_id=payment.invoice_id)
    where = f"invoice {payment.invoice.number}" if payment else f"charge {stripe_id(dispute.get('charge'))}"
    money = f"{dispute.get('amount')} {(dispute.get('currency') or '').upper()} (minor units)"
    if status in DISPUTE_CLOSED:
        if changed:
            _dispute_closed(
                dispute_id=dispute_id, status=status, where=where, money=money, invoice_status=invoice_status
            )
        return payment
    if opened:
        _dispute_alert(
            f"Stripe dispute {dispute_id} on {where}: {money}, "
            f"reason {dispute.get('reason') or 'unknown'}. Respond in the Stripe Dashboard before the deadline.",
            dedupe_key=f"dispute:{dispute_id}",
        )
    return payment


def _dispute_alert(message, *, dedupe_key):
    alert_raise(
        kind=Alert.Kind.DISPUTE,
        provider=stripe_api.PROVIDER,
        severity=Alert.Severity.CRITICAL,
        message=message,
        dedupe_key=dedupe_key,
    )


def _dispute_status_write(*, payment_id, dispute_id, status, amount, occurred_at):
    """Record `status` on the payment unless what it holds is newer; (the status it now holds, whether it changed).

    Lost is final: nothing but a newer `lost` is written over it, and it is written over anything (Stripe never
    changes a lost dispute's outcome, so a `won` after it, whenever created, is not believed). Otherwise newer
    means closed over open whatever the times (a late created or updated never reopens a decided dispute), else
    the later event. Read under the row's lock: two workers never decide on the same old status.
    """
    with transaction.atomic():
        row = (
            Payment.objects.select_for_update().filter(pk=payment_id).values("dispute_status", "dispute_event_at").get()
        )
        before, seen_at = row["dispute_status"], row["dispute_event_at"]
        was_closed, closes = before in DISPUTE_CLOSED, status in DISPUTE_CLOSED
        older = seen_at is not None and occurred_at is not None and occurred_at < seen_at
        if before == DISPUTE_LOST:
            stale = status != DISPUTE_LOST or older
        elif status == DISPUTE_LOST:
            stale = False
        else:
            stale = (was_closed and not closes) or (was_closed == closes and older)
        if stale:
            return before, False
        Payment.objects.filter(pk=payment_id).update(
            dispute_id=dispute_id, dispute_status=status, dispute_amount=amount, dispute_event_at=occurred_at or seen_at
        )
        return status, status != before


def charged_back_totals(*, invoice_id):
    """Record what lost disputes took of the invoice's own money, and move it to charged_back if they took any;
    the invoice's status after. Run again when a refund is recorded (refunds._refunded_totals), which may lower it.

    A payment loses at most what it still holds (Stripe withdraws nothing more from a refunded charge), and the
    invoice only what it held of its amount: a lost dispute on an extra payment (an invoice paid twice, which the
    payment_anomaly alert already asks staff to refund) takes that payment's money, and the invoice stays paid.
    Under the invoice's lock, so disputes on two of its payments decide one after the other.
    """
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().only("amount", "amount_refunded", "status").get(pk=invoice_id)
        held = lost = 0
        settled = Payment.objects.filter(invoice_id=invoice_id, status=Payment.Status.SUCCEEDED)
        for row in settled.values("amount", "amount_refunded", "dispute_status", "dispute_amount"):
            kept = max(0, row["amount"] - row["amount_refunded"])
            held += kept
            if row["dispute_status"] == DISPUTE_LOST:
                lost += min(row["dispute_amount"], kept)
        owed = max(0, invoice.amount - invoice.amount_refunded)  # what the invoice should hold of its amount
        taken = min(lost, owed, max(0, owed - (held - lost)))
        Invoice.objects.filter(pk=invoice_id).exclude(amount_charged_back=taken).update(amount_charged_back=taken)
        if not taken:
            if invoice.status == Invoice.Status.CHARGED_BACK and invoice.amount_refunded:
                # A refund reported after the loss was made before it: counted with it, the loss took nothing.
                refunded = invoice.amount_refunded >= invoice.amount
                to = Invoice.Status.REFUNDED if refunded else Invoice.Status.PARTIALLY_REFUNDED
                if transition(Invoice, invoice_id, to, frm=Invoice.Status.CHARGED_BACK):
                    _lost_alerts_restate(invoice_id=invoice_id, status=to)
                return to
            return invoice.status
        transition(Invoice, invoice_id, Invoice.Status.CHARGED_BACK, seen=invoice.status)
        return Invoice.objects.values_list("status", flat=True).get(pk=invoice_id)


CHARGED_BACK_AFTER = "The invoice now shows charged_back; settle it with the customer or write it off."


def _lost_alerts_restate(*, invoice_id, status):
    """The open alerts of the invoice's lost disputes said it shows charged_back; a refund made before the loss and
    reported after it took that back (charged_back_totals): they say what it shows now."""
    disputes = Payment.objects.filter(invoice_id=invoice_id, dispute_status=DISPUTE_LOST).exclude(dispute_id="")
    keys = [f"dispute:{d}:lost" for d in disputes.values_list("dispute_id", flat=True)]
    restated = (
        f"A refund made before the loss was reported after it: counted with it, the loss took nothing of the "
        f"invoice's money, which now shows {status}."
    )
    for pk, message in Alert.objects.filter(dedupe_key__in=keys, resolved_at__isnull=True).values_list("pk", "message"):
        if CHARGED_BACK_AFTER in message:
            Alert.objects.filter(pk=pk, message=message).update(message=message.replace(CHARGED_BACK_AFTER, restated))


def _dispute_closed(*, dispute_id, status, where, money, invoice_status):
    """The dispute was decided: the alert asking for a response is over, and a lost one tells staff the money went."""
    for alert in Alert.objects.filter(dedupe_key=f"dispute:{dispute_id}", resolved_at__isnull=True):
        alert_resolve(alert=alert)
    if status != DISPUTE_LOST:
        return
    if invoice_status == Invoice.Status.CHARGED_BACK:
        after = CHARGED_BACK_AFTER
    elif invoice_status is None:
        after = "No invoice of the hub's was paid by this charge; find it in Stripe."
    else:
        after = (
            f"The invoice stays {invoice_status}: it holds its amount from another payment or a refund gave this "
            "one back already; check the payments in admin."
        )
    _dispute_alert(
        f"Stripe dispute {dispute_id} on {where} was lost: {money} went back to the cardholder for good, "
        f"with Stripe's dispute fee. {after}",
        dedupe_key=f"dispute:{dispute_id}:lost",
    )
