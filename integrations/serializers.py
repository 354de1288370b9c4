from rest_framework import serializers


class ProviderStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    service = serializers.CharField()
    label = serializers.CharField()
    configured = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())
    circuit = serializers.ChoiceField(choices=["closed", "open", "half_open"])
