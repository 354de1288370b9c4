from django.conf import settings
from rest_framework import serializers

from integrations.models import ApiToken

from ..api.strict import StrictModelSerializer, StrictSerializer


class _TokenOptions(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    # A hard ceiling in the schema; API_TOKEN_MAX_TTL_DAYS (at most this) is checked below.
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=3650)

    def validate_expires_in_days(self, value):
        if value > settings.API_TOKEN_MAX_TTL_DAYS:
            raise serializers.ValidationError(f"At most {settings.API_TOKEN_MAX_TTL_DAYS} days.")
        return value


class LoginSerializer(_TokenOptions):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenCreateSerializer(_TokenOptions):
    pass


class ApiTokenSerializer(StrictModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"]


class NewApiTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="The secret key. Shown only in this response; store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = ["token", *ApiTokenSerializer.Meta.fields]
