from django.contrib import admin

from integrations.actions import each_row

from . import services
from .models import PricePoint, PriceWatch


class PricePointInline(admin.TabularInline):
    model = PricePoint
    extra = 0
    can_delete = False
    fields = ["checked_at", "departure_date", "price", "currency", "airline", "offer_count", "notified"]
    readonly_fields = fields
    ordering = ["-checked_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PriceWatch)
class PriceWatchAdmin(admin.ModelAdmin):
    """Staff see every watch and its history; the searches themselves are ProviderCalls (provider duffel)."""

    list_display = [
        "id",
        "owner",
        "origin",
        "destination",
        "departure_date",
        "departure_date_to",
        "status",
        "last_price",
        "currency",
        "target_price",
        "last_checked_at",
        "next_check_at",
    ]
    list_filter = ["status", "cabin_class"]
    search_fields = ["origin", "destination", "owner__username"]
    raw_id_fields = ["owner"]
    list_select_related = ["owner"]
    actions = ["pause", "resume", "cancel"]
    readonly_fields = [
        # The state machine moves only through the actions below (integrations.states), never a form field.
        "status",
        "last_price",
        "reference_price",
        "reference_point",
        "currency",
        "last_checked_at",
        "last_notified_at",
        "next_date_index",
        "last_error",
        "created_at",
        "updated_at",
    ]
    inlines = [PricePointInline]

    def _move(self, request, queryset, to, verb):
        done = each_row(self, request, queryset, lambda watch: services.watch_set_status(watch=watch, to=to))
        self.message_user(request, f"{done} watch(es) {verb}.")

    @admin.action(description="Pause selected watches", permissions=["change"])
    def pause(self, request, queryset):
        self._move(request, queryset, PriceWatch.Status.PAUSED, "paused")

    @admin.action(description="Resume selected watches", permissions=["change"])
    def resume(self, request, queryset):
        self._move(request, queryset, PriceWatch.Status.ACTIVE, "resumed")

    @admin.action(description="Cancel selected watches", permissions=["change"])
    def cancel(self, request, queryset):
        self._move(request, queryset, PriceWatch.Status.CANCELLED, "cancelled")
