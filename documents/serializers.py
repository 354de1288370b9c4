from rest_framework import serializers

from integrations.api.strict import StrictModelSerializer, StrictSerializer

from .models import Document, DocumentVersion


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The file, as multipart/form-data. Its type is decided from its content.")


class VersionSerializer(StrictModelSerializer):
    is_current = serializers.SerializerMethodField()

    class Meta:
        model = DocumentVersion
        fields = [
            "number",
            "filename",
            "content_type",
            "size",
            "sha256",
            "storage_class",
            "scan_status",
            "scan_detail",
            "scanned_at",
            "created_at",
            "is_current",
        ]
        read_only_fields = fields

    def get_is_current(self, obj) -> bool:
        return obj.document.current_version_id == obj.pk


class DocumentSerializer(StrictModelSerializer):
    filename = serializers.CharField(source="current_version.filename", read_only=True, default=None)
    content_type = serializers.CharField(source="current_version.content_type", read_only=True, default=None)
    size = serializers.IntegerField(source="current_version.size", read_only=True, default=None)
    version = serializers.IntegerField(source="current_version.number", read_only=True, default=None)
    scan_status = serializers.CharField(source="current_version.scan_status", read_only=True, default=None)
    storage_class = serializers.CharField(source="current_version.storage_class", read_only=True, default=None)
    versions_count = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = [
            "id",
            "filename",
            "content_type",
            "size",
            "version",
            "versions_count",
            "scan_status",
            "storage_class",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_versions_count(self, obj) -> int:
        count = getattr(obj, "versions_count", None)
        return count if count is not None else obj.versions.count()


class DownloadLinkSerializer(StrictSerializer):
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()
    version = serializers.IntegerField()
    filename = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField()


class StorageClassUsageSerializer(StrictSerializer):
    storage_class = serializers.CharField()
    bytes = serializers.IntegerField()
    monthly_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)


class DocumentUsageSerializer(StrictSerializer):
    bytes = serializers.IntegerField()
    quota_bytes = serializers.IntegerField(allow_null=True)
    max_upload_bytes = serializers.IntegerField()
    monthly_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)
    by_storage_class = StorageClassUsageSerializer(many=True)
