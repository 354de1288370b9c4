"""Budgets (editable, audited) and the hourly roll-ups (read-only evidence)."""

from django.contrib import admin

from ..admin_format import usd
from ..audit.mixins import AuditedAdminMixin
from ..models import Budget, ProviderRollup, UsageRollup
from ..units import UNITS
from .base import AppendOnlyAdmin


@admin.register(Budget)
class BudgetAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["provider", "owner", "limit"]
    list_filter = ["provider"]
    raw_id_fields = ["owner"]

    @admin.display(description="monthly limit", ordering="monthly_limit_usd")
    def limit(self, obj):
        return usd(obj.monthly_limit_usd, total=True)


class _RollupAdmin(AppendOnlyAdmin):
    list_filter = ["provider", ("hour", admin.DateFieldListFilter)]
    show_full_result_count = False
    date_hierarchy = None

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj):
        return usd(obj.cost_usd)

    @admin.display(description="units")
    def units(self, obj):
        parts = [f"{u.label}: {getattr(obj, u.column):,}" for u in UNITS if getattr(obj, u.column)]
        return "; ".join(parts) or "—"


@admin.register(UsageRollup)
class UsageRollupAdmin(_RollupAdmin):
    list_display = ["hour", "provider", "owner", "calls", "errors", "units", "cost"]
    list_select_related = ["owner"]
    exclude = []


@admin.register(ProviderRollup)
class ProviderRollupAdmin(_RollupAdmin):
    list_display = ["hour", "provider", "calls", "ok", "error", "rate_limited", "timeout", "units", "cost"]
