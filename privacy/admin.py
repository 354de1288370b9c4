from django.contrib import admin

from .models import Erasure, Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "status", "progress", "size", "created_at", "expires_at")
    list_filter = ("status",)
    search_fields = ("=owner__id", "owner__username")
    readonly_fields = [f.name for f in Export._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    """What was deleted where (no personal data), and erasures that need a person (status failed)."""

    list_display = ("id", "subject_id", "pseudonym", "status", "requested_at", "scheduled_for", "attempts")
    list_filter = ("status",)
    search_fields = ("=subject_id", "pseudonym")
    readonly_fields = [f.name for f in Erasure._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
