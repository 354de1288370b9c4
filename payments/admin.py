from django import forms
from django.contrib import admin

from integrations.actions import each_row
from integrations.admin_format import minor_units
from integrations.audit.mixins import AuditedAdminMixin

from . import currencies, services
from .models import Customer, Invoice, Payment, ReconciliationRun, Refund, Subscription


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    fields = [
        "attempt",
        "method",
        "status",
        "amount",
        "currency",
        "amount_refunded",
        "payment_intent_id",
        "failure_code",
        "failure_message",
        "dispute_status",
    ]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class MoneyColumns:
    """Amounts in currency units (4900 usd -> $49.00), never raw minor units."""

    @admin.display(description="amount", ordering="amount")
    def money(self, obj):
        return minor_units(obj.amount, obj.currency)

    @admin.display(description="refunded", ordering="amount_refunded")
    def money_refunded(self, obj):
        return minor_units(obj.amount_refunded, obj.currency) if obj.amount_refunded else "—"


class InvoiceMoneyColumns(MoneyColumns):
    @admin.display(description="charged back", ordering="amount_charged_back")
    def money_charged_back(self, obj):
        return minor_units(obj.amount_charged_back, obj.currency) if obj.amount_charged_back else "—"


class InvoiceAdminForm(forms.ModelForm):
    """The API's checks for a new invoice (InvoiceCreateSerializer): a currency Stripe takes, in lowercase, and
    an amount Stripe would charge in it, so staff cannot add an invoice whose customer could never pay it."""

    class Meta:
        model = Invoice
        fields = ["owner", "number", "description", "amount", "currency", "due_date", "subscription"]

    def clean_currency(self):
        code = self.cleaned_data["currency"].lower()
        if code not in currencies.SUPPORTED:
            raise forms.ValidationError(f"{code.upper()} is not an ISO 4217 currency that Stripe accepts.")
        return code

    def clean(self):
        cleaned = super().clean()
        amount, currency = cleaned.get("amount"), cleaned.get("currency")
        if "amount" in self.fields and amount is not None and currency:
            problem = currencies.amount_problem(amount, currency)
            if problem:
                self.add_error("amount", problem)
        return cleaned


@admin.register(Invoice)
class InvoiceAdmin(AuditedAdminMixin, InvoiceMoneyColumns, admin.ModelAdmin):
    form = InvoiceAdminForm
    list_display = [
        "number",
        "owner",
        "money",
        "status",
        "due_date",
        "paid_at",
        "money_refunded",
        "money_charged_back",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["number", "=external_id", "owner__username", "owner__email"]
    raw_id_fields = ["owner", "subscription"]
    readonly_fields = [
        "status",
        "paid_at",
        "amount_refunded",
        "amount_charged_back",
        "external_id",
        "created_at",
        "updated_at",
    ]
    inlines = [PaymentInline]
    actions = ["void_invoices"]

    def get_readonly_fields(self, request, obj=None):
        # Money and owner are fixed once a payment may exist.
        fixed = ["owner", "amount", "currency"] if obj and obj.pk else []
        return [*self.readonly_fields, *fixed]

    @admin.action(description="Void selected invoices (cancels live Stripe payments)", permissions=["change"])
    def void_invoices(self, request, queryset):
        done = each_row(self, request, queryset, lambda invoice: services.invoice_void(invoice=invoice))
        self.message_user(request, f"{done} invoice(s) voided.")


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ["amount", "reason", "status", "external_id", "failure_reason", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Payment)
class PaymentAdmin(MoneyColumns, admin.ModelAdmin):
    list_display = [
        "id",
        "invoice",
        "attempt",
        "method",
        "status",
        "money",
        "money_refunded",
        "failure_code",
        "disputed_at",
        "dispute_status",
    ]
    list_filter = ["status", "method", "failure_code", "dispute_status"]
    search_fields = ["=payment_intent_id", "=checkout_session_id", "=charge_id", "invoice__number"]
    list_select_related = ["invoice"]
    inlines = [RefundInline]
    actions = ["refund_in_full"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Payment._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Refund the remaining amount of selected payments (as a task)", permissions=["change"])
    def refund_in_full(self, request, queryset):
        done = each_row(
            self,
            request,
            queryset,
            lambda payment: services.refund_request(
                payment_id=payment.pk, reason="requested_by_customer", requested_by=request.user
            ),
        )
        self.message_user(request, f"{done} refund(s) queued; they show pending until Stripe confirms.")


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ["id", "payment", "money", "status", "external_id", "requested_by", "created_at"]
    list_select_related = ["payment"]

    @admin.display(description="amount", ordering="amount")
    def money(self, obj):
        return minor_units(obj.amount, obj.payment.currency)

    list_filter = ["status"]
    search_fields = ["=external_id"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Refund._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "price_id",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "pending_operation",
        "last_error",
    ]
    list_filter = ["status", "pending_operation", "cancel_at_period_end"]
    search_fields = ["=external_id", "owner__username", "price_id"]
    actions = ["cancel_now", "cancel_at_period_end"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Subscription._meta.fields]

    def has_add_permission(self, request):
        return False

    def _cancel(self, request, queryset, at_period_end):
        done = each_row(
            self,
            request,
            queryset,
            lambda sub: services.subscription_cancel(subscription_id=sub.pk, at_period_end=at_period_end),
        )
        self.message_user(request, f"{done} cancellation(s) queued; they show pending until Stripe confirms.")

    @admin.action(description="Cancel selected subscriptions now", permissions=["change"])
    def cancel_now(self, request, queryset):
        self._cancel(request, queryset, at_period_end=False)

    @admin.action(description="Cancel selected subscriptions at period end", permissions=["change"])
    def cancel_at_period_end(self, request, queryset):
        self._cancel(request, queryset, at_period_end=True)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["user", "external_id", "created_at"]
    search_fields = ["=external_id", "user__username", "user__email"]
    raw_id_fields = ["user"]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin):
    list_display = ["started_at", "finished_at", "checked", "fixed", "error"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ReconciliationRun._meta.fields]

    def has_add_permission(self, request):
        return False
