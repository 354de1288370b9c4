"""What the payments app does (writes), by concern:

    invoices.py       invoices and paying them (PaymentIntent or Checkout), voiding, Stripe-issued invoices
    settlement.py     what Stripe reports about a payment: status, fee, disputes
    refunds.py        refunds: request, send, settle
    subscriptions.py  subscriptions: pending operations carried out by a task
    reconcile.py      repair what a missed webhook left behind
    customers.py      one Stripe customer per user
    notify.py         telling the owner a payment failed
    common.py         adopting a Stripe object's row by its id or our metadata
    errors.py         the refusals (DomainError subclasses)

Views, tasks, admin, webhooks and the reconcile command all call these
(through the names below); none of them talks to Stripe directly.

Provider calls never run inside `transaction.atomic()`: short locked sections
decide what to do and write the row first, then the call happens, then the
result is stamped on the row.
"""

from .customers import customer_ensure, customer_forget
from .errors import InvalidTransition, InvoiceNotPayable, OperationPending, PaymentsError, RefundTooLarge
from .invoices import (
    INTENT_REUSE_WINDOW,
    invoice_create,
    invoice_pay,
    invoice_void,
    payment_cancel,
    stripe_invoice_apply,
)
from .notify import invoices_for_notice, payment_failed_notify
from .reconcile import reconcile_stripe
from .refunds import (
    REFUND_STATUS,
    charge_refunded_apply,
    refund_apply,
    refund_give_up,
    refund_request,
    refund_send,
    refund_upsert,
)
from .settlement import (
    INTENT_STATUS,
    dispute_record,
    money_mismatch,
    payment_apply,
    payment_apply_intent,
    payment_fee_record,
    payment_for_stripe_object,
    payments_for_fee_record,
    payments_for_intents,
)
from .subscriptions import (
    SUBSCRIPTION_STATUS,
    subscription_apply,
    subscription_cancel,
    subscription_change_price,
    subscription_give_up,
    subscription_request,
    subscription_send,
    subscription_upsert,
    subscriptions_cancel_for_erasure,
)

__all__ = [
    "INTENT_REUSE_WINDOW",
    "INTENT_STATUS",
    "REFUND_STATUS",
    "SUBSCRIPTION_STATUS",
    "InvalidTransition",
    "InvoiceNotPayable",
    "OperationPending",
    "PaymentsError",
    "RefundTooLarge",
    "charge_refunded_apply",
    "customer_ensure",
    "customer_forget",
    "dispute_record",
    "invoice_create",
    "invoice_pay",
    "invoice_void",
    "payment_apply",
    "payment_apply_intent",
    "money_mismatch",
    "payment_cancel",
    "payment_failed_notify",
    "invoices_for_notice",
    "payment_fee_record",
    "payment_for_stripe_object",
    "payments_for_fee_record",
    "payments_for_intents",
    "reconcile_stripe",
    "refund_apply",
    "refund_give_up",
    "refund_request",
    "refund_send",
    "refund_upsert",
    "stripe_invoice_apply",
    "subscription_apply",
    "subscription_cancel",
    "subscription_change_price",
    "subscription_give_up",
    "subscription_request",
    "subscription_send",
    "subscription_upsert",
    "subscriptions_cancel_for_erasure",
]
