import re

from rest_framework import serializers

from integrations.api.strict import StrictModelSerializer, StrictSerializer

from .models import CallLog, SmsMessage
from .providers import twiml
from .services import E164_RE, MAX_BODY

# A call speaks its text through TwiML, which is XML 1.0: it cannot carry these (NUL is refused for every body),
# and Twilio refuses TwiML longer than 4000 characters (error 32018), which escaping (& is &amp;) can reach.
NOT_IN_XML = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
MAX_TWIML = 4000


def _e164(value):
    if not E164_RE.match(value or ""):
        raise serializers.ValidationError("Use E.164 format: + then country code and number, e.g. +14155550100.")
    return value


class SmsCreateSerializer(StrictSerializer):
    to = serializers.CharField(max_length=20, validators=[_e164])
    body = serializers.CharField(max_length=MAX_BODY, trim_whitespace=False)

    def validate_body(self, value):
        if not value.strip():
            raise serializers.ValidationError("The message is empty.")
        return value


class SmsSerializer(StrictModelSerializer):
    sid = serializers.CharField(source="external_id", read_only=True, allow_null=True)

    class Meta:
        model = SmsMessage
        fields = [
            "id",
            "direction",
            "to_number",
            "from_number",
            "messaging_service_sid",
            "body",
            "status",
            "sid",
            "segments",
            "num_media",
            "price_usd",
            "price_final",
            "error_code",
            "error_message",
            "created_at",
            "sent_at",
            "delivered_at",
        ]
        read_only_fields = fields


class CallCreateSerializer(StrictSerializer):
    to = serializers.CharField(max_length=20, validators=[_e164])
    say = serializers.CharField(max_length=1000, help_text="What the call says when answered.")
    record = serializers.BooleanField(default=False)

    def validate_say(self, value):
        if NOT_IN_XML.search(value):
            raise serializers.ValidationError(
                "Remove control characters (such as a vertical tab): the call speaks the text through TwiML, "
                "which cannot carry them."
            )
        if len(twiml.say(value)) > MAX_TWIML:
            raise serializers.ValidationError(
                f"Too long as TwiML, which Twilio takes up to {MAX_TWIML} characters (& < > count as 4 or 5)."
            )
        return value


class CallSerializer(StrictModelSerializer):
    sid = serializers.CharField(source="external_id", read_only=True, allow_null=True)

    class Meta:
        model = CallLog
        fields = [
            "id",
            "direction",
            "from_number",
            "to_number",
            "status",
            "twilio_status",
            "sid",
            "duration_seconds",
            "price_usd",
            "price_final",
            "recording_url",
            "recording_duration",
            "transcript",
            "error_code",
            "error_message",
            "created_at",
        ]
        read_only_fields = fields
