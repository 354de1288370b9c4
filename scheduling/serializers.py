from rest_framework import serializers

from documents.serializers import StorageClassUsageSerializer  # the same shape as a document's storage usage
from integrations.api.strict import StrictModelSerializer, StrictSerializer

from . import capabilities
from .models import Meeting, MeetingAttendance, MeetingParticipant, MeetingRecording, SchedulingPreference


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 instant that must carry its offset: a bare local time means nothing across several zones."""

    def to_internal_value(self, value):
        from django.utils.dateparse import parse_datetime

        try:
            parsed = parse_datetime(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None  # well formatted but not a date (minute 99): the parent's "invalid" message says so
        if parsed is not None and parsed.tzinfo is None:
            self.fail("naive")
        return super().to_internal_value(value)

    default_error_messages = {"naive": "Give an offset or Z, e.g. 2026-12-07T09:00:00+01:00."}


class ParticipantInSerializer(StrictSerializer):
    email = serializers.EmailField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class BreakoutRoomSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    participants = serializers.ListField(child=serializers.EmailField(), max_length=200, default=list)


class MeetingSettingsSerializer(StrictSerializer):
    waiting_room = serializers.BooleanField(required=False, allow_null=True, default=None)
    mute_on_entry = serializers.BooleanField(required=False, allow_null=True, default=None)
    auto_recording = serializers.ChoiceField(choices=["none", "local", "cloud"], required=False, default="none")
    registration = serializers.BooleanField(
        required=False, default=False, help_text="Register participants: each gets a personal join link."
    )


class CalendarEventRefSerializer(StrictSerializer):
    connection = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="Your Google or Microsoft connection."
    )
    event_id = serializers.CharField(max_length=255, help_text="The event's id at Google Calendar or Graph.")


class MeetingCreateSerializer(StrictSerializer):
    provider = serializers.ChoiceField(choices=sorted(capabilities.PROVIDERS))
    topic = serializers.CharField(max_length=200)
    agenda = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    # Without an offset a time would be read in the server's zone (UTC), not `time_zone`: refused, never guessed.
    start_time = AwareDateTimeField(help_text="ISO 8601 with an offset, e.g. 2026-12-10T15:00:00+01:00.")
    duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60)
    time_zone = serializers.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin.")
    participants = ParticipantInSerializer(many=True, required=False, default=list, max_length=300)
    settings = MeetingSettingsSerializer(required=False, default=dict)
    breakout_rooms = BreakoutRoomSerializer(many=True, required=False, default=list, max_length=50)
    connection = serializers.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Google Meet, Teams, Webex: the id of your OAuth connection to make it on "
        "(default: your one connection of that provider with the meetings capability).",
    )
    calendar_event = CalendarEventRefSerializer(
        required=False,
        allow_null=True,
        default=None,
        help_text="Zoom, Webex: a calendar event to attach to; moving or cancelling it moves or cancels the meeting.",
    )


class MeetingUpdateSerializer(StrictSerializer):
    topic = serializers.CharField(max_length=200, required=False)
    agenda = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    start_time = AwareDateTimeField(required=False, help_text="ISO 8601 with an offset.")
    duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False)
    time_zone = serializers.CharField(max_length=64, required=False)
    settings = MeetingSettingsSerializer(required=False)


class ParticipantSerializer(StrictModelSerializer):
    class Meta:
        model = MeetingParticipant
        fields = ["email", "name", "registrant_id", "join_url", "breakout_room", "joined_at", "left_at"]


class MeetingSerializer(StrictModelSerializer):
    participants = ParticipantSerializer(many=True, read_only=True)
    meeting_id = serializers.CharField(source="external_id", read_only=True)
    settings = serializers.JSONField(source="meeting_settings", read_only=True)
    calendar_event = serializers.SerializerMethodField()

    class Meta:
        model = Meeting
        fields = [
            "id",
            "provider",
            "connection",
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
            "calendar_event",
            "participants",
            "started_at",
            "ended_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_calendar_event(self, obj) -> dict | None:
        if obj.provider in ("google_meet", "teams") and obj.connection_id:
            return {"connection": obj.connection_id, "event_id": obj.external_id}
        if obj.calendar_event_id and obj.calendar_connection_id:
            return {"connection": obj.calendar_connection_id, "event_id": obj.calendar_event_id}
        return None


class RecordingSerializer(StrictModelSerializer):
    link = serializers.SerializerMethodField(help_text="A short-lived hub link that streams the file.")

    class Meta:
        model = MeetingRecording
        fields = [
            "id",
            "file_type",
            "recording_type",
            "size_bytes",
            "recording_start",
            "recording_end",
            "link",
            "copy_status",
            "stored_bytes",
            "copied_at",
            "copy_error",
        ]

    def get_link(self, obj) -> str:
        from django.urls import reverse

        from .services import recording_link_token

        return self.context["request"].build_absolute_uri(
            reverse("scheduling:recording-link", args=[recording_link_token(obj)])
        )


class ProviderSerializer(StrictSerializer):
    provider = serializers.CharField()
    connection = serializers.CharField(
        allow_null=True, help_text="The OAuth provider users connect for it (null: the hub's own account)."
    )
    needs_grant = serializers.DictField(
        child=serializers.CharField(), help_text="Capabilities that need this extra OAuth capability on the connection."
    )
    not_configured = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Capabilities that the hub's settings do not enable yet, with the settings they still need.",
    )
    available = serializers.BooleanField()
    configured = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())


# --- Availability ------------------------------------------------------------------


def _time_zone(value):
    from integrations.timezones import zone_or_none

    if zone_or_none(value) is None:
        raise serializers.ValidationError(f"Unknown IANA time zone {value!r}.")
    return value


class WorkingHoursSerializer(StrictSerializer):
    time_zone = serializers.CharField(
        max_length=64, required=False, validators=[_time_zone], help_text="IANA name, e.g. Europe/Berlin."
    )
    days = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=7),
        min_length=1,
        max_length=7,
        required=False,
        help_text="ISO weekdays, 1 = Monday.",
    )
    start = serializers.TimeField(required=False, help_text="Wall-clock time, e.g. 09:00.")
    end = serializers.TimeField(required=False, help_text="Wall-clock time; at or before start runs past midnight.")


class AvailabilityUserSerializer(StrictSerializer):
    id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    working_hours = WorkingHoursSerializer(required=False, allow_null=True, default=None)


class AvailabilityRequestSerializer(StrictSerializer):
    users = AvailabilityUserSerializer(many=True, allow_empty=False)
    start = AwareDateTimeField()
    end = AwareDateTimeField()
    duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60)
    time_zone = serializers.CharField(
        max_length=64,
        required=False,
        default="",
        validators=[_time_zone],
        help_text="Default zone for participants whose working hours name none.",
    )
    working_hours = WorkingHoursSerializer(
        required=False, default=dict, help_text="Default days and hours (Mon-Fri 09:00-17:00)."
    )
    granularity_minutes = serializers.ChoiceField(choices=[5, 10, 15, 30, 60], default=15)
    working_hours_policy = serializers.ChoiceField(choices=["required", "preferred", "any"], default="preferred")
    max_results = serializers.IntegerField(min_value=1, max_value=200, default=20)

    def validate_users(self, value):
        from django.conf import settings

        if len(value) > settings.AVAILABILITY_MAX_USERS:
            raise serializers.ValidationError(f"At most {settings.AVAILABILITY_MAX_USERS} users per question.")
        return value

    def validate(self, attrs):
        from datetime import timedelta

        from django.conf import settings

        for name in ("start", "end"):
            if not 2000 <= attrs[name].year <= 2200:
                raise serializers.ValidationError({name: "Must fall between the years 2000 and 2200."})
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "The window must end after it starts."})
        days = settings.AVAILABILITY_MAX_WINDOW_DAYS
        if attrs["end"] - attrs["start"] > timedelta(days=days):
            raise serializers.ValidationError({"end": f"The window may span at most {days} days."})
        if timedelta(minutes=attrs["duration_minutes"]) > attrs["end"] - attrs["start"]:
            raise serializers.ValidationError({"duration_minutes": "Longer than the window."})
        return attrs


class AvailabilityWorkingHoursOutSerializer(StrictSerializer):
    time_zone = serializers.CharField()
    days = serializers.ListField(child=serializers.IntegerField())
    start = serializers.CharField()
    end = serializers.CharField()
    source = serializers.ChoiceField(choices=["request", "microsoft", "default"])


class AvailabilityUserOutSerializer(StrictSerializer):
    id = serializers.IntegerField()
    working_hours = AvailabilityWorkingHoursOutSerializer()


class AvailabilitySlotSerializer(StrictSerializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    score = serializers.FloatField(help_text="Mean share of the slot inside each participant's working hours (0-1).")
    inside_working_hours = serializers.IntegerField(help_text="Participants whose working hours hold all of it.")
    outside_working_hours_of = serializers.ListField(child=serializers.IntegerField())


class AvailabilitySerializer(StrictSerializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    duration_minutes = serializers.IntegerField()
    granularity_minutes = serializers.IntegerField()
    working_hours_policy = serializers.CharField()
    ranking = serializers.CharField()
    users = AvailabilityUserOutSerializer(many=True)
    slots = AvailabilitySlotSerializer(many=True)
    connections = serializers.DictField(child=serializers.IntegerField())
    warnings = serializers.ListField(child=serializers.DictField())


class AttendanceSerializer(StrictModelSerializer):
    class Meta:
        model = MeetingAttendance
        fields = ["participant_key", "email", "name", "joined_at", "left_at"]


class PreferenceSerializer(StrictModelSerializer):
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Null until first changed.")

    class Meta:
        model = SchedulingPreference
        fields = ["copy_recordings", "updated_at"]
        read_only_fields = ["updated_at"]


class PreferenceUpdateSerializer(StrictSerializer):
    copy_recordings = serializers.BooleanField(
        help_text="Copy each recording booked from now on to the hub's storage (S3), priced per GB-month."
    )


class RecordingUsageSerializer(StrictSerializer):
    bytes = serializers.IntegerField(help_text="Bytes of your recordings the hub holds.")
    monthly_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)
    by_storage_class = StorageClassUsageSerializer(many=True)
