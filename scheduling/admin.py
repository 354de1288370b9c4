from django.contrib import admin

from .models import Meeting, MeetingParticipant, MeetingRecording


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
