"""Staff see every API token's owner, name, prefix and dates, never a secret (none is stored)."""

from django.contrib import admin

from integrations.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "created_at", "expires_at", "last_used_at"]
    list_select_related = ["user"]
    search_fields = ["prefix", "name", "user__username"]
    readonly_fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at"]
    exclude = ["digest"]
    actions = ["delete_selected"]

    def has_add_permission(self, request):
        return False  # a key is shown once, to its owner, through the API

    def has_change_permission(self, request, obj=None):
        return False
