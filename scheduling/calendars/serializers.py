import datetime as dt

from rest_framework import serializers

from integrations.api.strict import StrictModelSerializer, StrictSerializer

from ..models import Calendar, CalendarEvent
from . import times


def in_years(value):
    if not times.in_years(value):
        raise serializers.ValidationError(f"Must fall between the years {times.FIRST_YEAR} and {times.LAST_YEAR}.")
    return value


class WallClockDateTimeField(serializers.DateTimeField):
    """A date-time kept naive when the client gave no offset: it is then wall-clock time in the event's zone."""

    def enforce_timezone(self, value):
        return value


class OffsetKeptDateTimeField(serializers.DateTimeField):
    """A date-time that keeps the offset the client gave (not moved to UTC): a window's days are the client's."""

    def enforce_timezone(self, value):
        return value if value.tzinfo is not None else super().enforce_timezone(value)


class CalendarSerializer(StrictModelSerializer):
    provider = serializers.CharField(source="kind")
    push = serializers.SerializerMethodField()

    class Meta:
        model = Calendar
        fields = [
            "id",
            "connection",
            "provider",
            "name",
            "primary",
            "time_zone",
            "access_role",
            "last_synced_at",
            "push",
        ]

    def get_push(self, calendar) -> dict:
        expires = calendar.channel_expires_at or calendar.subscription_expires_at
        return {"active": bool(expires and expires > dt.datetime.now(dt.UTC)), "expires_at": expires}


class AttendeeInSerializer(StrictSerializer):
    email = serializers.EmailField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    optional = serializers.BooleanField(required=False, default=False)


class ReminderSerializer(StrictSerializer):
    method = serializers.ChoiceField(choices=["popup", "email"])
    minutes = serializers.IntegerField(min_value=0, max_value=40320)


class RemindersSerializer(StrictSerializer):
    use_default = serializers.BooleanField(default=True)
    overrides = ReminderSerializer(many=True, required=False, default=list, max_length=5)


class EventInSerializer(StrictSerializer):
    """Only the fields given are used: a PATCH changes what it names."""

    title = serializers.CharField(max_length=1024, allow_blank=True)
    description = serializers.CharField(max_length=8000, allow_blank=True)
    location = serializers.CharField(max_length=1024, allow_blank=True)
    start = WallClockDateTimeField(
        validators=[in_years], help_text="ISO 8601; without an offset it is wall-clock time in time_zone."
    )
    end = WallClockDateTimeField(validators=[in_years])
    all_day = serializers.BooleanField()
    start_date = serializers.DateField(validators=[in_years], help_text="All-day events: the first day.")
    end_date = serializers.DateField(
        validators=[in_years], help_text="All-day events: the day after the last (exclusive), as both providers."
    )
    time_zone = serializers.CharField(max_length=64, help_text="IANA name; default the calendar's.")
    attendees = AttendeeInSerializer(many=True, max_length=300)
    reminders = RemindersSerializer()
    visibility = serializers.CharField(max_length=16)
    recurrence = serializers.ListField(
        child=serializers.CharField(max_length=1000),
        max_length=50,
        help_text='RFC 5545 lines, e.g. ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=10", "EXDATE;TZID=Europe/Berlin:20260309T090000"].',
    )


class EventQuerySerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["this", "following", "all"], required=False, default=None, allow_null=True)
    original_start = serializers.CharField(
        required=False,
        default=None,
        allow_null=True,
        max_length=40,
        help_text="On a series: the planned start of the occurrence (ISO 8601 date-time, or a date for all-day).",
    )
    notify = serializers.BooleanField(required=False, default=True, help_text="Send the attendees updates.")

    def validate_original_start(self, value):
        if value is None:
            return None
        try:
            if len(value) == 10:
                return in_years(dt.date.fromisoformat(value))
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise serializers.ValidationError("An ISO 8601 date-time with an offset, or a date.") from None
        if moment.tzinfo is None:
            raise serializers.ValidationError("Give the offset (e.g. Z or +01:00).")
        return in_years(moment).astimezone(dt.UTC)


class WindowSerializer(serializers.Serializer):
    # Kept in the client's offset: all-day events count on the dates the window covers there (expand, event_list).
    start = OffsetKeptDateTimeField(required=False, default=None, allow_null=True, validators=[in_years])
    end = OffsetKeptDateTimeField(required=False, default=None, allow_null=True, validators=[in_years])
    expand = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if (attrs["start"] is None) != (attrs["end"] is None):
            raise serializers.ValidationError({"end": "Give start and end together."})
        if attrs["start"] is not None and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "end must be after start."})
        return attrs


class EventSerializer(StrictModelSerializer):
    event_id = serializers.CharField(source="external_id")
    start_local = serializers.SerializerMethodField()
    end_local = serializers.SerializerMethodField()

    class Meta:
        model = CalendarEvent
        fields = [
            "id",
            "calendar",
            "event_id",
            "status",
            "title",
            "description",
            "location",
            "all_day",
            "start",
            "end",
            "start_local",
            "end_local",
            "start_date",
            "end_date",
            "time_zone",
            "attendees",
            "reminders",
            "visibility",
            "recurrence",
            "recurring_event_id",
            "original_start",
            "html_link",
            "etag",
            "provider_updated_at",
        ]

    def _local(self, value, row):
        return times.wall(value, row.time_zone).isoformat() if value else None

    def get_start_local(self, row) -> str | None:
        """The start as wall-clock time in the event's zone (what a person sees in that zone)."""
        return self._local(row.start, row)

    def get_end_local(self, row) -> str | None:
        return self._local(row.end, row)


class OccurrenceSerializer(StrictSerializer):
    """One event or one occurrence of a series in a window (GET .../events/?expand=true)."""

    event = serializers.IntegerField(
        help_text="The event row that answers for it: the series' own for a planned occurrence, else its own row."
    )
    series = serializers.IntegerField(source="series_id", allow_null=True, help_text="The series' event id, if any.")
    recurring_event_id = serializers.CharField(help_text="The provider's id of the series ('' for a single event).")
    original_start = serializers.CharField(
        allow_null=True,
        help_text="The occurrence's planned start (UTC date-time, or the date for all-day series): what PATCH and "
        "DELETE take as original_start with scope=this.",
    )
    event_id = serializers.CharField(source="row.external_id", help_text="The provider's id of the answering row.")
    status = serializers.CharField(source="row.status")
    title = serializers.CharField(source="row.title")
    description = serializers.CharField(source="row.description")
    location = serializers.CharField(source="row.location")
    all_day = serializers.BooleanField()
    start = serializers.DateTimeField(allow_null=True)
    end = serializers.DateTimeField(allow_null=True)
    start_local = serializers.CharField(allow_null=True, help_text="The start as wall-clock time in time_zone.")
    end_local = serializers.CharField(allow_null=True)
    start_date = serializers.DateField(allow_null=True)
    end_date = serializers.DateField(allow_null=True, help_text="All-day: the day after the last (exclusive).")
    time_zone = serializers.CharField(source="row.time_zone")
    attendees = serializers.JSONField(source="row.attendees")
    visibility = serializers.CharField(source="row.visibility")
    html_link = serializers.CharField(source="row.html_link")
