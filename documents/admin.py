"""Staff see every document with its versions, sizes, types, scan status and
storage class. There is deliberately no link to any file: a download always
goes through a short-lived signed URL, never a permanent public one."""

from django.contrib import admin
from django.db.models import Count

from integrations.actions import each_row

from . import services
from .models import Document, DocumentVersion


class VersionInline(admin.TabularInline):
    model = DocumentVersion
    extra = 0
    can_delete = False
    fields = [
        "number",
        "filename",
        "content_type",
        "size",
        "scan_status",
        "scan_detail",
        "storage_class",
        "backend",
        "storage_key",
        "quarantined_at",
        "created_at",
    ]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "filename",
        "content_type",
        "size",
        "scan_status",
        "versions",
        "storage_class",
        "state",
        "created_at",
    ]
    list_filter = ["state", "current_version__scan_status", "current_version__storage_class"]
    search_fields = ["owner__username", "versions__filename", "versions__sha256"]
    readonly_fields = ["owner", "current_version", "state", "created_at", "updated_at", "deleted_at"]
    inlines = [VersionInline]
    list_select_related = ["owner", "current_version"]
    actions = ["delete_documents"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(versions_total=Count("versions"))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Django's delete would only remove the rows (and is refused anyway, versions being undeletable):
        # the stored objects would stay until the orphan sweep. Staff delete as the owner does, by the service.
        return False

    def has_document_delete_permission(self, request):
        return request.user.has_perm(f"{Document._meta.app_label}.delete_{Document._meta.model_name}")

    @admin.action(
        description="Delete (gone for the owner now; the files are removed from storage by the purge)",
        permissions=["document_delete"],
    )
    def delete_documents(self, request, queryset):
        done = each_row(self, request, queryset, lambda document: services.document_delete(document=document))
        self.message_user(request, f"{done} document(s) deleted; their files are being removed from storage.")

    @admin.display(description="file name")
    def filename(self, obj):
        return obj.current_version.filename if obj.current_version else "-"

    @admin.display(description="type")
    def content_type(self, obj):
        return obj.current_version.content_type if obj.current_version else "-"

    @admin.display(description="size (bytes)")
    def size(self, obj):
        return obj.current_version.size if obj.current_version else "-"

    @admin.display(description="scan")
    def scan_status(self, obj):
        return obj.current_version.scan_status if obj.current_version else "-"

    @admin.display(description="storage class")
    def storage_class(self, obj):
        return obj.current_version.storage_class if obj.current_version else "-"

    @admin.display(description="versions", ordering="versions_total")
    def versions(self, obj):
        return obj.versions_total


@admin.register(DocumentVersion)
class DocumentVersionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "document",
        "number",
        "filename",
        "content_type",
        "size",
        "scan_status",
        "quarantined_at",
        "storage_class",
        "created_at",
    ]
    # The backend (S3 or local) is a filter and on the detail page, not a column: the list must fit 1280 px.
    list_filter = [
        "scan_status",
        ("quarantined_at", admin.EmptyFieldListFilter),
        "storage_class",
        "backend",
        "content_type",
    ]
    search_fields = ["filename", "sha256", "document__owner__username"]
    readonly_fields = [f.name for f in DocumentVersion._meta.fields]
    actions = ["rescan", "refresh_storage_class"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Versions are immutable, like in the inline: deleting the current one left its document with no
        # file (the owner's download answered 500) and its stored object to the orphan sweep. Delete the
        # document instead (its list's Delete action).
        return False

    @admin.action(description="Scan again (unscanned or failed scans)", permissions=["change"])
    def rescan(self, request, queryset):
        done = each_row(self, request, queryset, lambda version: services.version_rescan(version=version))
        self.message_user(request, f"{done} version(s) queued for scanning.")

    @admin.action(description="Read the storage class back from S3", permissions=["change"])
    def refresh_storage_class(self, request, queryset):
        done = each_row(
            self,
            request,
            queryset.select_related("document"),
            lambda version: services.version_refresh_storage_class(version=version),
        )
        self.message_user(request, f"Storage class refreshed for {done} version(s).")
