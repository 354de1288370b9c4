from django.contrib import admin

from .audit.mixins import AuditedAdminMixin
from .models import Connection


def _state(value):
    return "set" if value else "not set"


@admin.register(Connection)
class ConnectionAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = (
        "owner",
        "provider",
        "account",
        "status",
        "expires_at",
        "last_used_at",
        "access_token_state",
        "refresh_token_state",
    )
    list_filter = ("provider", "status")
    search_fields = ("account", "owner__username", "owner__email")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    # Token values never reach a page: they are excluded from the form and shown only as set / not set.
    exclude = ("access_token", "refresh_token")
    readonly_fields = (
        "access_token_state",
        "refresh_token_state",
        "last_used_at",
        "last_refreshed_at",
        "created_at",
        "updated_at",
    )
    show_full_result_count = False

    @admin.display(description="Access token")
    def access_token_state(self, obj):
        return _state(obj.access_token)

    @admin.display(description="Refresh token")
    def refresh_token_state(self, obj):
        return _state(obj.refresh_token)
