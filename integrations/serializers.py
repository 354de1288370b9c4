from rest_framework import serializers

from .models import ProviderCall


class ProviderStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    service = serializers.CharField()
    label = serializers.CharField()
    configured = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())
    circuit = serializers.ChoiceField(choices=["closed", "open", "half_open"])


class StaffProviderStatusSerializer(ProviderStatusSerializer):
    last_success_at = serializers.DateTimeField(allow_null=True)
    calls_24h = serializers.IntegerField()
    error_rate_24h = serializers.FloatField()


class ProviderUsageSerializer(serializers.Serializer):
    provider = serializers.CharField()
    calls = serializers.IntegerField()
    errors = serializers.IntegerField()
    units = serializers.DecimalField(max_digits=20, decimal_places=4)
    cost_usd = serializers.DecimalField(max_digits=16, decimal_places=6)


class UsageSerializer(serializers.Serializer):
    month = serializers.CharField()
    since = serializers.DateTimeField()
    total_cost_usd = serializers.DecimalField(max_digits=16, decimal_places=6)
    providers = ProviderUsageSerializer(many=True)


class ProviderCallSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProviderCall
        fields = [
            "id",
            "provider",
            "operation",
            "outcome",
            "http_status",
            "latency_ms",
            "attempt",
            "provider_request_id",
            "units",
            "cost_usd",
            "error_code",
            "error_message",
            "related_type",
            "related_id",
            "created_at",
        ]
