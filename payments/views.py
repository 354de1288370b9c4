"""Thin DRF views: validate, call one service, return.

Clients see only their own invoices and subscriptions (another user's is a
404); staff-only actions (create/void invoices, refunds, subscription
changes) are marked with IsAdminUser. Every POST with a Stripe side effect
accepts an Idempotency-Key header.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import idempotent
from integrations.api.ratelimit import ratelimit
from integrations.audit.services import audit_record

from . import selectors, services
from .models import Invoice, Payment, Subscription
from .serializers import (
    InvoiceCreateSerializer,
    InvoiceSerializer,
    PayRequestSerializer,
    PayResponseSerializer,
    RefundCreateSerializer,
    RefundSerializer,
    StaffInvoiceSerializer,
    SubscriptionCancelSerializer,
    SubscriptionChangePriceSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
)


class StaffForWrites(IsAuthenticated):
    """Anyone signed in may read (their own rows); only staff may POST."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        return request.method in ("GET", "HEAD", "OPTIONS") or request.user.is_staff


class InvoiceListCreateView(generics.ListAPIView):
    """Your invoices, newest first. Staff: POST creates an invoice for a user."""

    permission_classes = [StaffForWrites]
    serializer_class = InvoiceSerializer

    def get_queryset(self):
        return selectors.invoice_list_for_owner(owner=self.request.user)

    @extend_schema(request=InvoiceCreateSerializer, responses={201: StaffInvoiceSerializer})
    def post(self, request):
        data = InvoiceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        invoice = services.invoice_create(
            owner=v["owner"],
            amount=v["amount"],
            currency=v["currency"],
            description=v["description"],
            due_date=v["due_date"],
            status=Invoice.Status.DRAFT if v["draft"] else Invoice.Status.OPEN,
        )
        return Response(StaffInvoiceSerializer(invoice).data, status=status.HTTP_201_CREATED)


class InvoiceDetailView(generics.RetrieveAPIView):
    """One of your invoices (staff: any invoice, with its payments)."""

    serializer_class = InvoiceSerializer

    def get_queryset(self):
        if self.request.user.is_staff:
            return Invoice.objects.prefetch_related("payments")
        return selectors.invoice_list_for_owner(owner=self.request.user)

    def get_serializer_class(self):
        return StaffInvoiceSerializer if self.request.user.is_staff else InvoiceSerializer


class InvoicePayView(APIView):
    """Pay your invoice: a PaymentIntent client_secret (default) or a Stripe Checkout URL.

    Calling it again for the same invoice reuses the same payment attempt (and
    PaymentIntent); a paid or void invoice answers 409.
    """

    @extend_schema(
        request=PayRequestSerializer,
        responses={
            200: PayResponseSerializer,
            402: OpenApiResponse(
                description="`card_declined`: Stripe declined the card. `provider_code` (Stripe's error code, "
                "as on every provider error: `card_declined`, `expired_card`, ...), `decline_code` (Stripe's, or "
                "`generic_decline` where Stripe asks not to tell the customer more) and `detail` (Stripe's sentence "
                "for the customer). Nothing was charged; the invoice stays payable and the next call is a new "
                "attempt. A provider failure is 502/503/504 instead (retry later)."
            ),
            409: OpenApiResponse(description="`invoice_not_payable`: the invoice is paid or void."),
        },
    )
    @ratelimit(group="payments.pay", rate="5/m", key="user")
    @idempotent
    def post(self, request, pk):
        data = PayRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment, result = services.invoice_pay(invoice_id=pk, owner=request.user, method=data.validated_data["method"])
        audit_record(
            action="invoice.pay", request=request, target=payment, invoice=pk, method=data.validated_data["method"]
        )
        return Response(PayResponseSerializer(result).data)


class InvoiceVoidView(APIView):
    """Staff: void an unpaid invoice (a live Stripe payment for it is cancelled)."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={200: StaffInvoiceSerializer})
    @idempotent
    def post(self, request, pk):
        invoice = get_object_or_404(Invoice, pk=pk)
        invoice = services.invoice_void(invoice=invoice)
        audit_record(action="invoice.void", request=request, target=invoice)
        return Response(StaffInvoiceSerializer(invoice).data)


class PaymentRefundsView(APIView):
    """Staff: a payment's refunds (GET), or refund it in full or in part (POST, runs as a task)."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: RefundSerializer(many=True)})
    def get(self, request, pk):
        payment = get_object_or_404(Payment, pk=pk)
        return Response(RefundSerializer(payment.refunds.all(), many=True).data)

    @extend_schema(
        request=RefundCreateSerializer,
        responses={
            202: RefundSerializer,
            400: OpenApiResponse(
                description="`refund_exceeds_remaining`: more than remains refundable; `refund_amount_invalid`: an "
                "amount Stripe refuses in the payment's currency (three-decimal ones in steps of 10, ISK in whole "
                "krónur). Both carry `remaining`."
            ),
            409: OpenApiResponse(
                description="`payment_charged_back`: a lost dispute took the money back; `payment_disputed`: a "
                "chargeback is open (accept it in the Stripe Dashboard instead); `invalid_state`: not succeeded."
            ),
        },
    )
    @idempotent
    def post(self, request, pk):
        get_object_or_404(Payment, pk=pk)
        data = RefundCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        refund = services.refund_request(
            payment_id=pk,
            amount=data.validated_data.get("amount"),
            reason=data.validated_data["reason"],
            requested_by=request.user,
        )
        refund.refresh_from_db()
        audit_record(action="payment.refund", request=request, target=refund, payment=pk, amount=refund.amount)
        return Response(RefundSerializer(refund).data, status=status.HTTP_202_ACCEPTED)


class SubscriptionListCreateView(generics.ListAPIView):
    """Your subscriptions. Staff: POST subscribes a user to a Stripe price (runs as a task)."""

    permission_classes = [StaffForWrites]
    serializer_class = SubscriptionSerializer

    def get_queryset(self):
        return selectors.subscription_list_for_owner(owner=self.request.user)

    @extend_schema(request=SubscriptionCreateSerializer, responses={202: SubscriptionSerializer})
    @idempotent
    def post(self, request):
        data = SubscriptionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = services.subscription_request(
            owner=data.validated_data["owner"], price_id=data.validated_data["price_id"]
        )
        audit_record(action="subscription.create", request=request, target=sub, price_id=sub.price_id)
        sub.refresh_from_db()
        return Response(SubscriptionSerializer(sub).data, status=status.HTTP_202_ACCEPTED)


class SubscriptionDetailView(generics.RetrieveAPIView):
    serializer_class = SubscriptionSerializer

    def get_queryset(self):
        if self.request.user.is_staff:
            return Subscription.objects.all()
        return selectors.subscription_list_for_owner(owner=self.request.user)


class SubscriptionChangePriceView(APIView):
    """Staff: move a subscription to another price (with proration), as a task."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=SubscriptionChangePriceSerializer, responses={202: SubscriptionSerializer})
    @idempotent
    def post(self, request, pk):
        get_object_or_404(Subscription, pk=pk)
        data = SubscriptionChangePriceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = services.subscription_change_price(subscription_id=pk, price_id=data.validated_data["price_id"])
        audit_record(
            action="subscription.change_price", request=request, target=sub, price_id=data.validated_data["price_id"]
        )
        return Response(SubscriptionSerializer(sub).data, status=status.HTTP_202_ACCEPTED)


class SubscriptionCancelView(APIView):
    """Staff: cancel now, or at the end of the current period (default), as a task."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=SubscriptionCancelSerializer, responses={202: SubscriptionSerializer})
    @idempotent
    def post(self, request, pk):
        get_object_or_404(Subscription, pk=pk)
        data = SubscriptionCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = services.subscription_cancel(subscription_id=pk, at_period_end=data.validated_data["at_period_end"])
        audit_record(
            action="subscription.cancel",
            request=request,
            target=sub,
            at_period_end=data.validated_data["at_period_end"],
        )
        return Response(SubscriptionSerializer(sub).data, status=status.HTTP_202_ACCEPTED)
