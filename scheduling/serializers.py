from rest_framework import serializers

from . import capabilities
from .models import Meeting, MeetingParticipant, MeetingRecording


class ParticipantInSerializer(serializers.Serializer):
    email = serializers.EmailField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class BreakoutRoomSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    participants = serializers.ListField(child=serializers.EmailField(), max_length=200, default=list)


class MeetingSettingsSerializer(serializers.Serializer):
    waiting_room = serializers.BooleanField(required=False, allow_null=True, default=None)
    mute_on_entry = serializers.BooleanField(required=False, allow_null=True, default=None)
    auto_recording = serializers.ChoiceField(choices=["none", "local", "cloud"], required=False, default="none")
    registration = serializers.BooleanField(
        required=False, default=False, help_text="Register participants: each gets a personal join link."
    )


class MeetingCreateSerializer(serializers.Serializer):
    provider = serializers.ChoiceField(choices=sorted(capabilities.PROVIDERS))
    topic = serializers.CharField(max_length=200)
    agenda = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    start_time = serializers.DateTimeField(help_text="ISO 8601 with an offset, e.g. 2026-12-10T15:00:00+01:00.")
    duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60)
    time_zone = serializers.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin.")
    participants = ParticipantInSerializer(many=True, required=False, default=list, max_length=300)
    settings = MeetingSettingsSerializer(required=False, default=dict)
    breakout_rooms = BreakoutRoomSerializer(many=True, required=False, default=list, max_length=50)


class MeetingUpdateSerializer(serializers.Serializer):
    topic = serializers.CharField(max_length=200, required=False)
    agenda = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    start_time = serializers.DateTimeField(required=False)
    duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False)
    time_zone = serializers.CharField(max_length=64, required=False)
    settings = MeetingSettingsSerializer(required=False)


class ParticipantSerializer(serializers.ModelSerializer):
    class Meta:
        model = MeetingParticipant
        fields = ["email", "name", "registrant_id", "join_url", "breakout_room", "joined_at", "left_at"]


class MeetingSerializer(serializers.ModelSerializer):
    participants = ParticipantSerializer(many=True, read_only=True)
    meeting_id = serializers.CharField(source="external_id", read_only=True)
    settings = serializers.JSONField(source="meeting_settings", read_only=True)

    class Meta:
        model = Meeting
        fields = [
            "id",
            "provider",
            "meeting_id",
            "status",
            "topic",
            "agenda",
            "start_time",
            "duration_minutes",
            "time_zone",
            "join_url",
            "passcode",
            "dial_in",
            "settings",
            "participants",
            "started_at",
            "ended_at",
            "created_at",
        ]
        read_only_fields = fields


class RecordingSerializer(serializers.ModelSerializer):
    link = serializers.SerializerMethodField(help_text="A short-lived hub link that streams the file.")

    class Meta:
        model = MeetingRecording
        fields = ["id", "file_type", "recording_type", "size_bytes", "recording_start", "recording_end", "link"]

    def get_link(self, obj) -> str:
        from django.urls import reverse

        from .services import recording_link_token

        return self.context["request"].build_absolute_uri(
            reverse("scheduling:recording-link", args=[recording_link_token(obj)])
        )


class ProviderSerializer(serializers.Serializer):
    provider = serializers.CharField()
    available = serializers.BooleanField()
    configured = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())
