from django.contrib import admin

from .models import Calendar, CalendarEvent, Meeting, MeetingParticipant, MeetingRecording


class ParticipantInline(admin.TabularInline):
    model = MeetingParticipant
    extra = 0
    readonly_fields = ["email", "name", "registrant_id", "join_url", "breakout_room", "joined_at", "left_at"]
    can_delete = False


class RecordingInline(admin.TabularInline):
    model = MeetingRecording
    extra = 0
    fields = ["external_id", "file_type", "recording_type", "size_bytes", "recording_start", "recording_end"]
    readonly_fields = fields
    can_delete = False


@admin.register(Meeting)
class MeetingAdmin(admin.ModelAdmin):
    list_display = ["topic", "provider", "external_id", "status", "start_time", "owner"]
    list_filter = ["provider", "status"]
    search_fields = ["topic", "external_id", "owner__username"]
    readonly_fields = [f.name for f in Meeting._meta.fields]
    inlines = [ParticipantInline, RecordingInline]

    def has_add_permission(self, request):
        return False  # meetings are created through the API, on the provider first


class CalendarEventInline(admin.TabularInline):
    model = CalendarEvent
    extra = 0
    fields = ["external_id", "title", "status", "start", "start_date", "time_zone", "recurring_event_id"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Calendar)
class CalendarAdmin(admin.ModelAdmin):
    """Provider data, read-only: calendars come from the provider's list, events from sync."""

    list_display = [
        "name",
        "kind",
        "owner",
        "primary",
        "time_zone",
        "last_synced_at",
        "channel_expires_at",
        "subscription_expires_at",
    ]
    list_filter = ["kind", "primary"]
    search_fields = ["name", "external_id", "owner__username"]
    exclude = ["client_state"]  # a subscription's shared secret is never shown
    readonly_fields = [f.name for f in Calendar._meta.fields if f.name != "client_state"]

    def has_add_permission(self, request):
        return False


@admin.register(CalendarEvent)
class CalendarEventAdmin(admin.ModelAdmin):
    list_display = ["title", "calendar", "status", "start", "start_date", "time_zone", "synced_at"]
    list_filter = ["status", "all_day", "calendar__kind"]
    search_fields = ["title", "external_id", "calendar__owner__username"]
    readonly_fields = [f.name for f in CalendarEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
