from rest_framework import serializers

from ..api.strict import StrictModelSerializer, StrictSerializer
from ..models import Connection
from . import config as oauth_config


class StartSerializer(StrictSerializer):
    capabilities = serializers.ListField(
        child=serializers.CharField(max_length=32), min_length=1, max_length=10, help_text="mail, calendar, meetings"
    )
    connection = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,  # a bigint id: anything larger is a 400, never a database error
        help_text="An existing connection to add capabilities to (incremental).",
    )


class CallbackSerializer(serializers.Serializer):
    """The provider's redirect parameters, as it sent them."""

    state = serializers.CharField(required=False)
    code = serializers.CharField(required=False)
    error = serializers.CharField(required=False)
    error_description = serializers.CharField(required=False)


class StartResponseSerializer(StrictSerializer):
    authorization_url = serializers.URLField()


class ConnectionSerializer(StrictModelSerializer):
    """A connection as its owner sees it: never a token value."""

    provider = serializers.SerializerMethodField()
    missing_scopes = serializers.SerializerMethodField(help_text="Scopes asked for that the provider did not grant.")

    class Meta:
        model = Connection
        fields = [
            "id",
            "provider",
            "account",
            "capabilities",
            "scopes",
            "requested_scopes",
            "missing_scopes",
            "status",
            "status_detail",
            "expires_at",
            "last_used_at",
            "last_refreshed_at",
            "created_at",
        ]

    def get_provider(self, obj) -> str:
        try:
            return oauth_config.by_registry_name(obj.provider).key
        except LookupError:
            return obj.provider

    def get_missing_scopes(self, obj) -> list[str]:
        from .services import missing_scopes

        try:
            return missing_scopes(obj, obj.requested_scopes)
        except LookupError:
            return []


class DeleteResponseSerializer(StrictSerializer):
    revoked = serializers.BooleanField()
    detail = serializers.CharField()
