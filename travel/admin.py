from django.contrib import admin

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
    readonly_fields = [
        "last_price",
        "reference_price",
        "currency",
        "last_checked_at",
        "last_notified_at",
        "next_date_index",
        "last_error",
        "created_at",
        "updated_at",
    ]
    inlines = [PricePointInline]
