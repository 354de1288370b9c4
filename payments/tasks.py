"""Celery tasks: thin wrappers that run one service each, by id, on the payments queue.

Every task is safe to run twice: the row's state (pending operation, empty
Stripe id) is checked first, and every write to Stripe carries an
Idempotency-Key fixed before the first attempt, so a retry or a redelivery
after a lost worker makes Stripe return the first result instead of acting again.
"""

import logging

from celery import shared_task
from django.db.models import Q

from integrations import outbox
from integrations.email import mail_connection
from integrations.registry import get_provider
from integrations.task_base import BACKGROUND_PRIORITY, ProviderTask, batch_sends

from . import services
from .models import Invoice, Payment, Refund, Subscription

logger = logging.getLogger(__name__)


def _refund_give_up(task, exc, refund_id, **kwargs):
    services.refund_give_up(refund_id=refund_id, error=exc)


def _subscription_give_up(task, exc, subscription_id, **kwargs):
    services.subscription_give_up(subscription_id=subscription_id, error=exc)


@shared_task(bind=True, base=ProviderTask, provider="stripe", give_up=_refund_give_up, name="payments.refund_send")
def refund_send(self, refund_id):
    return services.refund_send(refund_id=refund_id)


@shared_task(
    bind=True, base=ProviderTask, provider="stripe", give_up=_subscription_give_up, name="payments.subscription_send"
)
def subscription_send(self, subscription_id):
    return services.subscription_send(subscription_id=subscription_id)


@shared_task(bind=True, base=ProviderTask, provider="stripe", name="payments.payment_cancel")
def payment_cancel(self, payment_id):
    return services.payment_cancel(payment_id=payment_id)


# A fee look-up is bookkeeping (the fee on the payment's `charge` ProviderCall, for the cost reports): nothing
# waits for it, so it yields to the webhook drains and sends of a burst (BACKGROUND_PRIORITY). A success queues
# one, an outbound Stripe call each: at the same priority they took about a fifth of the Celery worker's CPU
# while a burst of events was still being applied (issue 11, bench_stripe_events).
@shared_task(
    bind=True, base=ProviderTask, provider="stripe", priority=BACKGROUND_PRIORITY, name="payments.payment_fee_record"
)
def payment_fee_record(self, payment_id):
    return services.payment_fee_record(payment_id=payment_id)


@shared_task(
    bind=True, base=ProviderTask, provider="stripe", priority=BACKGROUND_PRIORITY, name="payments.payment_fees_record"
)
def payment_fees_record(self, payment_ids):
    """payment_fee_record for the successes of one drained webhook batch: one message, one read of the payments."""

    def prepare(ids):
        found = services.payments_for_fee_record(payment_ids=ids)
        return lambda pk: services.payment_fee_record(payment_id=pk, payment=found.get(pk))

    return self.run_each(payment_fee_record, payment_ids, prepare=prepare)


batch_sends(payment_fee_record, payment_fees_record)


# The outbox re-sends each of these until its row leaves the state that needs it; Stripe's Idempotency-Key
# (fixed before the first attempt) makes a re-sent write return the first result.
outbox.register(Refund, refund_send, due_states=(Refund.Status.PENDING,), where=Q(external_id=""))
outbox.register(Subscription, subscription_send, where=~Q(pending_operation=""))
outbox.register(
    Payment,
    payment_fee_record,
    due_states=(Payment.Status.SUCCEEDED,),
    where=Q(fee_recorded=False) & ~Q(payment_intent_id=""),
)
outbox.register(Payment, payment_cancel, due_states=Payment.LIVE, where=Q(invoice__status=Invoice.Status.VOID))


@shared_task(bind=True, base=ProviderTask, provider="stripe", name="payments.reconcile_stripe")
def reconcile_stripe(self, hours=72):
    # Beat sends this every hour whether or not Stripe is set up. Without a key there is nothing to reconcile
    # (no payment could have reached Stripe), so the run is a skip that says so, not a failure: a hub without
    # Stripe would otherwise log a traceback and raise a task_failed alert every hour. The management command
    # still calls the service directly and reports the missing setting as an error.
    missing = get_provider("stripe").missing()
    if missing:
        logger.info("stripe reconciliation skipped: Stripe is not configured (set %s)", ", ".join(missing))
        return {"status": "skipped", "reason": "provider_not_configured", "missing": missing}
    run = services.reconcile_stripe(hours=hours)
    return {"status": "ok", "checked": run.checked, "fixed": run.fixed}


@shared_task(bind=True, base=ProviderTask, provider="email", name="payments.payment_failed_notify")
def payment_failed_notify(self, invoice_id, reason=""):
    return services.payment_failed_notify(invoice_id=invoice_id, reason=reason)


@shared_task(bind=True, base=ProviderTask, provider="email", name="payments.payment_failed_notices")
def payment_failed_notices(self, items):
    """payment_failed_notify for the failures of one drained webhook batch ([invoice_id, reason] each): one
    message, one read of the invoices and one mail session instead of one each; every notice is still its own
    send (and ProviderCall), a failed one goes on to its own retry, and one already sent is not sent again when
    the message is redelivered (ProviderTask.run_each)."""
    connection = mail_connection()

    def prepare(batch):
        found = services.invoices_for_notice(invoice_ids=[invoice_id for invoice_id, _reason in batch])

        def notify(item):
            invoice_id, reason = item[0], item[1] if len(item) > 1 else ""  # as the lone task's default
            return services.payment_failed_notify(
                invoice_id=invoice_id, reason=reason, invoice=found.get(invoice_id), connection=connection
            )

        return notify

    try:
        return self.run_each(payment_failed_notify, items, prepare=prepare, whole_args=True)
    finally:
        connection.close()


batch_sends(payment_failed_notify, payment_failed_notices, whole_args=True)
