from django.contrib import admin

from integrations.actions import each_row
from integrations.admin_format import pretty_json

from .models import (
    Calendar,
    CalendarEvent,
    Meeting,
    MeetingAttendance,
    MeetingCreate,
    MeetingParticipant,
    MeetingRecording,
    MeetingSubscription,
)


class ProviderRecordsInline(admin.TabularInline):
    """Rows the provider's answers and events made: shown on the meeting, never added or deleted by hand."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class ParticipantInline(ProviderRecordsInline):
    model = MeetingParticipant
    readonly_fields = ["email", "name", "registrant_id", "join_url", "breakout_room", "joined_at", "left_at"]


class AttendanceInline(ProviderRecordsInline):
    model = MeetingAttendance
    fields = ["participant_key", "email", "name", "joined_at", "left_at"]
    readonly_fields = fields


class RecordingInline(ProviderRecordsInline):
    model = MeetingRecording
    fields = [
        "external_id",
        "file_type",
        "recording_type",
        "size_bytes",
        "recording_start",
        "recording_end",
        "copy_status",
        "stored_bytes",
        "copy_error",
    ]
    readonly_fields = fields


class SubscriptionInline(ProviderRecordsInline):
    """The meeting's lifecycle subscriptions at its provider (Google Meet, Teams); the clientState is never shown."""

    model = MeetingSubscription
    fields = ["kind", "external_id", "status", "expires_at", "last_error", "updated_at"]
    readonly_fields = fields


# Keys of a provider's meeting that let whoever holds them act as its host: Zoom's start URL carries the host's
# ZAK token, Webex's host key claims the host role. They stay out of every page, as out of every API answer.
HOST_CREDENTIALS = ("start_url", "hostKey")


@admin.register(Meeting)
class MeetingAdmin(admin.ModelAdmin):
    list_display = ["topic", "provider", "external_id", "status", "start_time", "owner"]
    list_filter = ["provider", "status"]
    search_fields = ["topic", "external_id", "owner__username"]
    exclude = ["raw"]
    readonly_fields = [*(f.name for f in Meeting._meta.fields if f.name != "raw"), "provider_record"]
    inlines = [ParticipantInline, AttendanceInline, RecordingInline, SubscriptionInline]

    def has_add_permission(self, request):
        return False  # meetings are created through the API, on the provider first

    @admin.display(description="raw")
    def provider_record(self, obj):
        return pretty_json(obj.raw or {}, hidden=HOST_CREDENTIALS)


@admin.register(MeetingCreate)
class MeetingCreateAdmin(admin.ModelAdmin):
    """Meeting creates made with an Idempotency-Key: "ambiguous" (Zoom, Webex) means the next retry looks the meeting up.

    View only (no add, change or delete): the row is what keeps a retry from making a second meeting; staff editing
    or deleting it could make the next retry create again or answer with another meeting. (It goes with its
    meeting, and with its owner at erasure.)
    """

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting it would let the next retry of an ambiguous create make a second meeting

    @admin.display(description="create id", ordering="create_id")
    def create_id_short(self, obj):
        return f"{obj.create_id[:12]}…"  # 64 hex characters pushed the list's other columns out of view

    list_display = ("create_id_short", "provider", "owner", "doubt", "meeting", "created_at")
    list_filter = ("provider", "doubt")
    search_fields = ("create_id", "meeting__external_id")
    raw_id_fields = ("owner", "meeting")
    show_full_result_count = False


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


@admin.register(MeetingRecording)
class MeetingRecordingAdmin(admin.ModelAdmin):
    """Recordings and their copies in the hub's storage; a failed copy can be tried again."""

    list_display = ["external_id", "meeting", "file_type", "copy_status", "stored_bytes", "copied_at"]
    list_filter = ["copy_status", "meeting__provider"]
    search_fields = ["external_id", "meeting__external_id"]
    readonly_fields = [f.name for f in MeetingRecording._meta.fields]
    actions = ["copy_again"]

    @admin.action(description="Copy selected failed recordings again", permissions=["change"])
    def copy_again(self, request, queryset):
        from .recordings import recording_copy_retry

        done = each_row(self, request, queryset, lambda row: recording_copy_retry(recording=row))
        self.message_user(request, f"{done} copy(ies) queued again.")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MeetingSubscription)
class MeetingSubscriptionAdmin(admin.ModelAdmin):
    """Lifecycle subscriptions the hub holds at Google (Workspace Events) and Microsoft (Graph), read-only: the
    hourly upkeep renews, re-creates or lets them lapse; a failed one says why in last_error. One the hub gave up
    on (a Google Meet one past its reactivations, a Teams one Graph refused) is tried again by staff, once its
    cause is put right (meet_subscription_retry, teams_lifecycle.subscription_retry)."""

    list_display = ["meeting", "provider", "kind", "status", "expires_at", "updated_at"]
    list_filter = ["provider", "kind", "status"]
    search_fields = ["external_id", "meeting__external_id", "meeting__owner__username"]
    exclude = ["client_state"]
    readonly_fields = [f.name for f in MeetingSubscription._meta.fields if f.name != "client_state"]
    actions = ["retry_subscriptions"]

    @admin.action(description="Retry selected failed Google Meet and Teams subscriptions", permissions=["retry"])
    def retry_subscriptions(self, request, queryset):
        from .meet_events import meet_subscription_retry
        from .teams_lifecycle import subscription_retry as teams_subscription_retry

        def retry(row):
            if row.provider == Meeting.Provider.TEAMS:
                return teams_subscription_retry(subscription=row)
            return meet_subscription_retry(subscription=row)

        done = each_row(self, request, queryset, retry)
        self.message_user(request, f"{done} subscription(s) queued to be tried again.")

    def has_retry_permission(self, request):
        # The rows stay read-only (has_change_permission): the action is the one change staff may make.
        return request.user.has_perm("scheduling.change_meetingsubscription")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
