from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail cannot be added to, edited or deleted from admin."""

    list_display = ("at", "actor_label", "action", "target_type", "target_id", "outcome", "ip", "request_id")
    list_filter = ("outcome", "action", "target_type")
    search_fields = ("actor_label", "action", "target_id", "target_label", "request_id")
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
