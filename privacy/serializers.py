from django.contrib.auth import get_user_model
from rest_framework import serializers

from integrations.api.strict import StrictModelSerializer, StrictSerializer

from .models import Erasure, Export


def UserIdField(**kwargs):  # noqa: N802 - reads as a field class
    """A user's id, bounded (a number the database cannot hold is a 400); `validate_user` turns it into the row."""
    return serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False, **kwargs)


class UserLookup:
    def validate_user(self, value):
        user = get_user_model().objects.filter(pk=value).first()
        if user is None:
            raise serializers.ValidationError("No such user.")
        return user


class ExportRequestSerializer(UserLookup, StrictSerializer):
    user = UserIdField(help_text="Staff only: whose data to export.")
    include_all_versions = serializers.BooleanField(
        default=False, help_text="Every stored version of each document, not only the current one."
    )


class ExportSerializer(StrictModelSerializer):
    user = serializers.IntegerField(source="owner_id", read_only=True)
    download = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id",
            "user",
            "status",
            "progress",
            "step",
            "include_all_versions",
            "size",
            "sha256",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
            "download",
        ]
        read_only_fields = fields

    def get_download(self, obj) -> dict | None:
        """A signed link valid 24 h (never past the export's expiry), once the export is ready."""
        link = self.context.get("links", {}).get(obj.pk)
        if link is None:
            return None
        return {"url": link["url"], "expires_at": link["expires_at"].isoformat(), "filename": link["filename"]}


class EraseRequestSerializer(UserLookup, StrictSerializer):
    user = UserIdField(help_text="Staff only: whom to erase.")
    password = serializers.CharField(
        required=False, write_only=True, trim_whitespace=False, help_text="Your password (erasing your own account)."
    )
    expedite = serializers.BooleanField(default=False, help_text="Staff only: skip the grace period.")


class ErasureSerializer(StrictModelSerializer):
    class Meta:
        model = Erasure
        fields = [
            "id",
            "status",
            "requested_at",
            "scheduled_for",
            "started_at",
            "finished_at",
            "attempts",
            "last_error",
            "report",
        ]
        read_only_fields = fields


class EraseCancelSerializer(UserLookup, StrictSerializer):
    user = UserIdField(help_text="Staff only: whose erasure to cancel.")
    username = serializers.CharField(
        required=False, max_length=150, trim_whitespace=False, help_text="Your username (your own erasure)."
    )
    password = serializers.CharField(
        required=False, max_length=4096, write_only=True, trim_whitespace=False, help_text="Your password."
    )
