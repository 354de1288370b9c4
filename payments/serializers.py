from django.contrib.auth import get_user_model
from rest_framework import serializers

from integrations.api.strict import StrictModelSerializer, StrictSerializer

from . import currencies
from .models import Invoice, Payment, Refund, Subscription


def _status(model):
    # An enum in the schema; its component is named per model in
    # SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] (several models have a `status`).
    return serializers.ChoiceField(choices=model.Status.choices, read_only=True)


class PaymentSerializer(StrictModelSerializer):
    status = _status(Payment)
    method = serializers.CharField(read_only=True, help_text="intent or checkout")
    # The dispute (chargeback) on the payment's charge, from Stripe's charge.dispute.* events; `status` stays
    # succeeded whatever its outcome.
    disputed_at = serializers.DateTimeField(
        read_only=True, help_text="When the hub learned of a dispute on this payment; null if never disputed."
    )
    dispute_id = serializers.CharField(read_only=True, help_text="Stripe's dispute id (du_...); empty if none.")
    dispute_status = serializers.CharField(
        read_only=True,
        help_text="Stripe's dispute status as of its newest event: warning_needs_response, warning_under_review "
        "(an inquiry), needs_response, under_review, then warning_closed, won, lost or prevented; empty if none. "
        "Lost: the money went back to the cardholder.",
    )
    dispute_amount = serializers.IntegerField(
        read_only=True, help_text="The disputed amount in minor units (the payment's currency); 0 if none."
    )
    dispute_event_at = serializers.DateTimeField(
        read_only=True, help_text="When Stripe created the event dispute_status comes from; null if none."
    )

    class Meta:
        model = Payment
        fields = [
            "id",
            "method",
            "attempt",
            "status",
            "amount",
            "currency",
            "amount_refunded",
            "payment_intent_id",
            "checkout_session_id",
            "failure_code",
            "failure_message",
            "disputed_at",
            "dispute_id",
            "dispute_status",
            "dispute_amount",
            "dispute_event_at",
            "created_at",
        ]
        read_only_fields = fields


class InvoiceSerializer(StrictModelSerializer):
    status = _status(Invoice)
    amount_charged_back = serializers.IntegerField(
        read_only=True,
        help_text="Minor units that lost disputes (chargebacks) took back for good; the status is then "
        "charged_back. 0 otherwise: an open dispute leaves the invoice paid, since Stripe reinstates the money "
        "if it is won.",
    )

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "description",
            "amount",
            "currency",
            "status",
            "due_date",
            "paid_at",
            "amount_refunded",
            "amount_charged_back",
            "created_at",
        ]
        read_only_fields = fields


class StaffInvoiceSerializer(InvoiceSerializer):
    owner = serializers.PrimaryKeyRelatedField(read_only=True)
    payments = PaymentSerializer(many=True, read_only=True)

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "owner", "payments"]
        read_only_fields = fields


class InvoiceCreateSerializer(StrictSerializer):
    owner = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all())
    amount = serializers.IntegerField(
        min_value=1,
        max_value=currencies.MAXIMUM["idr"],
        help_text="Minor units as Stripe counts them (cents; whole units for zero-decimal currencies such as JPY).",
    )
    currency = serializers.CharField(
        min_length=3, max_length=3, default="usd", help_text="ISO 4217 code that Stripe supports, e.g. usd."
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    due_date = serializers.DateField(required=False, allow_null=True, default=None)
    draft = serializers.BooleanField(default=False, help_text="Create as draft (not yet payable).")

    def validate_currency(self, value):
        code = value.lower()
        if code not in currencies.SUPPORTED:
            raise serializers.ValidationError(f"{value!r} is not an ISO 4217 currency that Stripe accepts.")
        return code

    def validate(self, attrs):
        problem = currencies.amount_problem(attrs["amount"], attrs["currency"])
        if problem:
            raise serializers.ValidationError({"amount": problem})
        return attrs


class PayRequestSerializer(StrictSerializer):
    method = serializers.ChoiceField(choices=Payment.Method.choices, default=Payment.Method.INTENT)


class PayResponseSerializer(StrictSerializer):
    invoice = serializers.IntegerField()
    payment = serializers.IntegerField()
    method = serializers.CharField()
    attempt = serializers.IntegerField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    publishable_key = serializers.CharField()
    client_secret = serializers.CharField(required=False, help_text="For method=intent: confirm it with Stripe.js.")
    payment_intent_id = serializers.CharField(required=False)
    checkout_url = serializers.URLField(required=False, help_text="For method=checkout: send the customer here.")
    checkout_session_id = serializers.CharField(required=False)


class RefundSerializer(StrictModelSerializer):
    status = _status(Refund)

    class Meta:
        model = Refund
        fields = ["id", "payment", "amount", "reason", "status", "external_id", "failure_reason", "created_at"]
        read_only_fields = fields


class RefundCreateSerializer(StrictSerializer):
    amount = serializers.IntegerField(
        min_value=1,
        max_value=currencies.MAXIMUM["idr"],
        required=False,
        help_text="Minor units; omit for the full remainder.",
    )
    reason = serializers.ChoiceField(
        choices=["duplicate", "fraudulent", "requested_by_customer"], required=False, allow_blank=True, default=""
    )


class SubscriptionSerializer(StrictModelSerializer):
    status = _status(Subscription)
    pending_operation = serializers.CharField(read_only=True, help_text="The change waiting for Stripe, if any.")

    class Meta:
        model = Subscription
        fields = [
            "id",
            "owner",
            "external_id",
            "price_id",
            "status",
            "current_period_end",
            "cancel_at_period_end",
            "pending_operation",
            "pending_price_id",
            "last_error",
            "created_at",
        ]
        read_only_fields = fields


class SubscriptionCreateSerializer(StrictSerializer):
    owner = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all())
    price_id = serializers.CharField(max_length=128)


class SubscriptionChangePriceSerializer(StrictSerializer):
    price_id = serializers.CharField(max_length=128)


class SubscriptionCancelSerializer(StrictSerializer):
    at_period_end = serializers.BooleanField(default=True)
