"""Meetings on video providers, their participants and recordings.

Our fields and the vendor's stay apart: `external_id` (unique with `provider`)
is the provider's meeting id, `raw` its last answer. Nothing here is ever
invented: join URLs, passcodes and dial-in numbers are what the provider said.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Meeting(models.Model):
    class Provider(models.TextChoices):
        ZOOM = "zoom"
        GOOGLE_MEET = "google_meet"
        TEAMS = "teams"
        WEBEX = "webex"

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        STARTED = "started"
        ENDED = "ended"
        CANCELLED = "cancelled"

    # A meeting may be started and ended several times (a recurring room, a restart);
    # cancelled is final. Webhooks move it; a late `started` after `cancelled` changes nothing.
    TRANSITIONS = {
        "scheduled": {"started", "ended", "cancelled"},
        "started": {"ended", "cancelled"},
        "ended": {"started", "cancelled"},
        "cancelled": set(),
    }

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="meetings")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    # The owner's OAuth connection the meeting lives on (Google Meet, Teams, Webex); Zoom uses the hub's account.
    connection = models.ForeignKey(
        "integrations.Connection", null=True, blank=True, on_delete=models.SET_NULL, related_name="meetings"
    )
    # A calendar event the meeting is attached to (issue 19 point 6), by the provider's ids: the connection the
    # calendar belongs to and the event's id there. Moving or cancelling that event moves or cancels the meeting.
    # (Google Meet and Teams meetings are calendar events themselves: `connection` + `external_id`.)
    calendar_connection = models.ForeignKey(
        "integrations.Connection", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    calendar_event_id = models.CharField(max_length=255, blank=True)
    # The provider's meeting id (Zoom meeting id, Google/Graph calendar event id, Webex meeting series id) and its
    # second id where it has one (Zoom uuid, Meet meeting code, Teams onlineMeeting id, Webex meeting number).
    external_id = models.CharField(max_length=255, blank=True)
    external_uuid = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    topic = models.CharField(max_length=200)
    agenda = models.TextField(blank=True)
    start_time = models.DateTimeField()
    duration_minutes = models.PositiveIntegerField()
    time_zone = models.CharField(max_length=64, default="UTC")
    join_url = models.URLField(max_length=1000, blank=True)
    passcode = models.CharField(max_length=64, blank=True)
    dial_in = models.JSONField(default=list, blank=True)
    meeting_settings = models.JSONField(default=dict, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start_time"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"], condition=~Q(external_id=""), name="meeting_unique_external"
            )
        ]
        indexes = [models.Index(fields=["calendar_connection", "calendar_event_id"], name="meeting_calendar_event")]

    def __str__(self):
        return f"{self.provider} {self.external_id or '-'} {self.topic}"


class MeetingParticipant(models.Model):
    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="participants")
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    # Registrant id and personal join link, where the provider registers invitees.
    registrant_id = models.CharField(max_length=128, blank=True)
    join_url = models.URLField(max_length=1000, blank=True)
    breakout_room = models.CharField(max_length=100, blank=True)
    joined_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["meeting", "email"], name="participant_unique_email")]

    def __str__(self):
        return f"{self.email} in {self.meeting_id}"


class MeetingRecording(models.Model):
    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="recordings")
    external_id = models.CharField(max_length=255)
    file_type = models.CharField(max_length=32, blank=True)
    recording_type = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    download_url = models.URLField(max_length=2000, help_text="The provider's URL; needs the provider's token.")
    recording_start = models.DateTimeField(null=True, blank=True)
    recording_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["recording_start", "pk"]
        constraints = [models.UniqueConstraint(fields=["meeting", "external_id"], name="recording_unique_external")]

    def __str__(self):
        return f"{self.file_type} {self.external_id} of {self.meeting_id}"
