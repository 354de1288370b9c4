from rest_framework import serializers

from .api.strict import StrictModelSerializer, StrictSerializer
from .models import ProviderCall
from .units import UNITS


class ProviderStatusSerializer(StrictSerializer):
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


class UnitsSerializer(StrictSerializer):
    """Each unit apart (integrations.units): requests, tokens, segments, minutes, bytes and money never add up."""

    for _unit in UNITS:
        locals()[_unit.column] = (
            serializers.DecimalField(max_digits=18, decimal_places=2, help_text=_unit.label)
            if _unit.money
            else serializers.IntegerField(help_text=_unit.label)
        )
    del _unit


class ProviderUsageSerializer(StrictSerializer):
    provider = serializers.CharField()
    calls = serializers.IntegerField()
    errors = serializers.IntegerField()
    units = UnitsSerializer()
    cost_usd = serializers.DecimalField(max_digits=16, decimal_places=6)


class UsageSerializer(StrictSerializer):
    month = serializers.CharField()
    since = serializers.DateTimeField()
    total_cost_usd = serializers.DecimalField(max_digits=16, decimal_places=6)
    providers = ProviderUsageSerializer(many=True)


class ProviderCallSerializer(StrictModelSerializer):
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
