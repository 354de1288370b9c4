from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from .models import Erasure, Export

User = get_user_model()


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "status", "progress", "size", "created_at", "expires_at")
    list_filter = ("status",)
    search_fields = ("=owner__id", "owner__username")
    readonly_fields = [f.name for f in Export._meta.fields]

    def has_add_permission(self, request):
        return False

    # The zip goes with its row: the purge finds zips through their rows, so one whose row is gone would stay
    # in storage for good. (A build still running notices its row is gone and deletes what it uploaded.)
    def delete_model(self, request, obj):
        from .exports import export_delete_file

        export_delete_file(obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        from .exports import export_delete_file

        for export in queryset.exclude(storage_key=""):
            export_delete_file(export)
        super().delete_queryset(request, queryset)


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    """What was deleted where (no personal data), and erasures that need a person (status failed)."""

    list_display = ("id", "subject_id", "pseudonym", "status", "requested_at", "scheduled_for", "attempts")
    list_filter = ("status",)
    search_fields = ("=subject_id", "pseudonym")
    readonly_fields = [f.name for f in Erasure._meta.fields]
    actions = ["run_now"]

    @admin.action(description="Run now (expedite a scheduled erasure, or retry a failed one)", permissions=["change"])
    def run_now(self, request, queryset):
        from integrations.actions import each_row

        from .erasure import erasure_retry

        done = each_row(self, request, queryset, lambda row: erasure_retry(erasure_id=row.pk))
        self.message_user(request, f"{done} erasure(s) queued.")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ErasingUserAdmin(UserAdmin):
    """Django's user admin, except that an account leaves by the erasure, never by deleting its row.

    A plain delete cascades the user's rows and nothing else: their document files, export zips and
    recording copies stay in storage with no row naming them, their Google grant stays live and their
    webhook payloads stay unredacted. Staff erase instead (the API's staff erasure, with its grace period).
    """

    actions = ["erase"]

    def has_delete_permission(self, request, obj=None):
        return False

    def has_erase_permission(self, request):
        return request.user.has_perm(f"{User._meta.app_label}.delete_{User._meta.model_name}")

    @admin.action(description="Erase (deactivate now; delete everything after the grace period)", permissions=["erase"])
    def erase(self, request, queryset):
        from integrations.actions import each_row

        from .erasure import erase_request

        done = each_row(
            self,
            request,
            queryset,
            lambda user: erase_request(subject=user, requested_by=request.user, request=request),
        )
        self.message_user(request, f"{done} erasure(s) requested; their progress is under Privacy › Erasures.")


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, ErasingUserAdmin)
