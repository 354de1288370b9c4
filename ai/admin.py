from django.conf import settings
from django.contrib import admin
from django.db.models import Sum

from integrations.admin_format import latency, usd

from .models import AiBudget, AiFreeModel, AiRequest, AiSpend, AiUsageMonthly
from .usage import USAGE_SUMS


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj):
        return usd(obj.cost_usd)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AiRequest)
class AiRequestAdmin(_ReadOnly):
    list_display = [
        "created_at",
        "owner",
        "provider",
        "model",
        "outcome",
        "stream",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "cost",
        "latency",
    ]
    list_filter = ["outcome", "provider", "stream"]
    search_fields = ["=request_id", "model"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    show_full_result_count = False

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj):
        return latency(obj.latency_ms)

    def get_exclude(self, request, obj=None):
        # Prompts and answers are personal data: shown only where the operator chose to keep them.
        return [] if settings.AI_LOG_PROMPTS else ["prompt", "response_text"]


@admin.register(AiUsageMonthly)
class AiUsageMonthlyAdmin(_ReadOnly):
    list_display = [
        "month",
        "owner",
        "provider",
        "model",
        "requests",
        "cached_requests",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "cost",
    ]
    list_filter = ["month", "provider", "model"]
    # Totals of the filtered rows above the list: templates/admin/ai/aiusagemonthly/change_list.html.

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if cl is not None:
            columns = USAGE_SUMS
            totals = cl.queryset.aggregate(**{c: Sum(c) for c in columns})
            response.context_data["totals"] = {c: totals[c] or 0 for c in columns}
        return response

    search_fields = ["owner__username", "owner__email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]


@admin.register(AiBudget)
class AiBudgetAdmin(admin.ModelAdmin):
    list_display = ["owner", "monthly_limit_usd", "max_tokens", "note"]
    search_fields = ["owner__username", "owner__email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]


@admin.register(AiSpend)
class AiSpendAdmin(_ReadOnly):
    list_display = ["owner", "month", "spent_usd", "reserved_usd"]
    list_filter = ["month"]
    search_fields = ["owner__username", "owner__email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]


@admin.register(AiFreeModel)
class AiFreeModelAdmin(admin.ModelAdmin):
    """Staff accept an unpriced model as free here; until then requests naming it are refused."""

    list_display = ["provider", "model", "note", "created_at"]
    search_fields = ["provider", "model"]
