"""Payments: invoices paid through Stripe, refunds, subscriptions.

Money is always an integer in the currency's minor units (cents) plus an ISO
currency code, never a float. Each row whose state Stripe drives carries an
explicit state machine (`TRANSITIONS`); `payments.states.transition` is the
one function that moves a row, with a conditional UPDATE, so a redelivered
task or a late webhook can never take a row backwards.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from integrations.outbox import OutboxMixin


def _invoice_number():
    return f"INV-{timezone.now():%Y%m}-{secrets.token_hex(4).upper()}"


class Customer(models.Model):
    """A user's Stripe customer, created lazily (on first payment) through the gateway."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stripe_customer")
    external_id = models.CharField(max_length=64, blank=True, help_text="Stripe customer id (cus_...).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"], condition=~Q(external_id=""), name="customer_unique_external"
            )
        ]

    def __str__(self):
        return f"{self.user} ({self.external_id or 'not yet on Stripe'})"


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        PAID = "paid"
        PARTIALLY_REFUNDED = "partially_refunded"
        REFUNDED = "refunded"
        FAILED = "failed"
        VOID = "void"
        # Paid, then the money was taken back for good: a dispute (chargeback) on its payment was lost.
        CHARGED_BACK = "charged_back"

    # A failed invoice can still be paid (the customer retries); paid never
    # goes back to open or failed, whatever arrives late.
    TRANSITIONS = {
        "draft": {"open", "void"},
        "open": {"paid", "failed", "void"},
        "failed": {"paid", "void", "open"},
        "paid": {"partially_refunded", "refunded", "charged_back"},
        # Back down when Stripe reports a refund failed after it succeeded (the card was closed): the invoice
        # follows what is really refunded (payments.services.refunds), never a payment's event.
        "partially_refunded": {"refunded", "paid", "charged_back"},
        # A fully refunded charge has nothing left for a dispute to take (Stripe withdraws no more).
        "refunded": {"partially_refunded", "paid"},
        "void": set(),
        # Stripe never changes a lost dispute's outcome, so no later event (a late `won`) takes it back. Only a
        # refund reported after the loss can (payments.services.settlement.charged_back_totals): a refunded charge
        # loses nothing more, so a loss that, counted with that refund, took nothing leaves the invoice refunded.
        "charged_back": {"partially_refunded", "refunded"},
    }
    PAYABLE = frozenset({"open", "failed"})

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=64, unique=True, default=_invoice_number)
    description = models.CharField(max_length=500, blank=True)
    amount = models.PositiveBigIntegerField(help_text="In the currency's minor units (cents).")
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.OPEN)
    due_date = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    amount_refunded = models.PositiveBigIntegerField(default=0)
    amount_charged_back = models.PositiveBigIntegerField(
        default=0, help_text="Minor units lost disputes took back for good (with status charged_back)."
    )
    # Set for invoices Stripe issued itself (subscriptions); blank for the hub's own.
    external_id = models.CharField(
        max_length=64, blank=True, help_text="Stripe invoice id (in_...), if Stripe issued it."
    )
    subscription = models.ForeignKey(
        "Subscription", null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"], condition=~Q(external_id=""), name="invoice_unique_external"
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__lte=models.F("amount")), name="invoice_refund_le_amount"
            ),
        ]
        indexes = [models.Index(fields=["owner", "-created_at"], name="invoice_owner_created")]

    def __str__(self):
        return f"{self.number} {self.amount} {self.currency} ({self.status})"


class Payment(OutboxMixin, models.Model):
    """One attempt at paying an invoice: a PaymentIntent, or a Checkout Session and the intent behind it."""

    class Method(models.TextChoices):
        INTENT = "intent"
        CHECKOUT = "checkout"

    class Status(models.TextChoices):
        CREATING = "creating"  # row exists, Stripe not yet answered
        PENDING = "pending"  # waiting for the customer
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    # `failed` is not final: the customer may retry the same intent with
    # another card. `succeeded` and `canceled` are final.
    TRANSITIONS = {
        "creating": {"pending", "processing", "succeeded", "failed", "canceled"},
        "pending": {"processing", "succeeded", "failed", "canceled"},
        "processing": {"succeeded", "failed", "canceled", "pending"},
        "failed": {"pending", "processing", "succeeded", "canceled"},
        "succeeded": set(),
        "canceled": set(),
    }
    LIVE = frozenset({"creating", "pending", "processing", "failed"})

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.INTENT)
    attempt = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATING)
    amount = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3)
    amount_refunded = models.PositiveBigIntegerField(default=0)
    payment_intent_id = models.CharField(max_length=64, blank=True)
    checkout_session_id = models.CharField(max_length=128, blank=True)
    charge_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=128, help_text="Sent to Stripe as Idempotency-Key; one per attempt.")
    params_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the invoice text and Stripe customer this attempt was created with; blank until sent.",
    )
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.TextField(blank=True)
    disputed_at = models.DateTimeField(null=True, blank=True)
    # The dispute (chargeback) on this payment's charge as the newest charge.dispute.* event had it; a charge has
    # one. Kept apart from `status` and `last_event_at`: the payment succeeded whatever the dispute's outcome.
    dispute_id = models.CharField(max_length=64, blank=True, help_text="Stripe dispute id (du_...).")
    dispute_status = models.CharField(
        max_length=32,
        blank=True,
        help_text="Stripe's dispute status: warning_* (an inquiry), needs_response, under_review, then won or lost.",
    )
    dispute_amount = models.PositiveBigIntegerField(
        default=0, help_text="The disputed amount (minor units, the charge's currency) as the newest event had it."
    )
    dispute_event_at = models.DateTimeField(null=True, blank=True)
    fee_recorded = models.BooleanField(default=False)
    # The `created` of the newest Stripe event applied: an older event is stale.
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "attempt"], name="payment_unique_attempt"),
            models.UniqueConstraint(
                fields=["payment_intent_id"], condition=~Q(payment_intent_id=""), name="payment_unique_intent"
            ),
            models.UniqueConstraint(
                fields=["checkout_session_id"], condition=~Q(checkout_session_id=""), name="payment_unique_session"
            ),
        ]

    def __str__(self):
        return f"{self.invoice.number} attempt {self.attempt} ({self.status})"

    @property
    def refundable(self):
        """Minor units still refundable: the amount minus refunds pending or done."""
        taken = sum(r.amount for r in self.refunds.all() if r.status in Refund.COUNTED)
        return max(0, self.amount - taken)


class Refund(OutboxMixin, models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    TRANSITIONS = {
        "pending": {"succeeded", "failed", "canceled"},
        # Stripe can report a refund failed after it first succeeded (the card was closed).
        "succeeded": {"failed"},
        "failed": set(),
        "canceled": set(),
    }
    # What counts against the refundable remainder.
    COUNTED = frozenset({"pending", "succeeded"})

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.PositiveBigIntegerField()
    reason = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    external_id = models.CharField(max_length=64, blank=True, help_text="Stripe refund id (re_...).")
    idempotency_key = models.CharField(max_length=128)
    failure_reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], condition=~Q(external_id=""), name="refund_unique_external")
        ]

    def __str__(self):
        return f"refund {self.amount} of {self.payment_id} ({self.status})"


class Subscription(OutboxMixin, models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # created here, Stripe not yet confirmed
        INCOMPLETE = "incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired"
        TRIALING = "trialing"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        UNPAID = "unpaid"
        PAUSED = "paused"
        CANCELED = "canceled"
        FAILED = "failed"  # Stripe refused to create it

    TRANSITIONS = {
        "pending": {"incomplete", "trialing", "active", "past_due", "canceled", "failed"},
        "incomplete": {"active", "trialing", "past_due", "incomplete_expired", "canceled"},
        "trialing": {"active", "past_due", "unpaid", "paused", "canceled"},
        "active": {"past_due", "unpaid", "paused", "canceled"},
        "past_due": {"active", "unpaid", "canceled", "paused"},
        "unpaid": {"active", "past_due", "canceled"},
        "paused": {"active", "canceled"},
        "incomplete_expired": set(),
        "canceled": set(),
        "failed": set(),
    }

    class Operation(models.TextChoices):
        NONE = ""
        CREATE = "create"
        CHANGE_PRICE = "change_price"
        CANCEL_NOW = "cancel_now"
        CANCEL_AT_PERIOD_END = "cancel_at_period_end"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="subscriptions")
    external_id = models.CharField(max_length=64, blank=True, help_text="Stripe subscription id (sub_...).")
    price_id = models.CharField(max_length=128)
    item_id = models.CharField(max_length=64, blank=True, help_text="Stripe subscription item id (si_...).")
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PENDING)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # A staff change waiting for Stripe: shown as pending until confirmed.
    pending_operation = models.CharField(max_length=24, choices=Operation.choices, blank=True, default="")
    pending_price_id = models.CharField(max_length=128, blank=True)
    operation_seq = models.PositiveIntegerField(default=0, help_text="Counts operations; part of each Idempotency-Key.")
    last_error = models.TextField(blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"], condition=~Q(external_id=""), name="subscription_unique_external"
            )
        ]

    def __str__(self):
        return f"{self.owner} {self.price_id} ({self.status})"

    @property
    def operation_key(self):
        return f"hub-sub-{self.pk}-op-{self.operation_seq}-{self.pending_operation}"


class ReconciliationRun(models.Model):
    """One pass of reconcile_stripe: what it looked at and what it repaired."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    since = models.DateTimeField()
    checked = models.PositiveIntegerField(default=0)
    fixed = models.PositiveIntegerField(default=0)
    fixes = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M} fixed {self.fixed} of {self.checked}"
