"""Meetings on video providers, their participants and recordings.

Our fields and the vendor's stay apart: `external_id` (unique with `provider`)
is the provider's meeting id, `raw` its last answer. Nothing here is ever
invented: join URLs, passcodes and dial-in numbers are what the provider said.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from integrations.fields import EncryptedTextField
from integrations.outbox import OutboxMixin


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


class MeetingRecording(OutboxMixin, models.Model):
    """A recording file the provider reported (recording-completed webhook, or the recordings list).

    With the owner's opt-in (SchedulingPreference.copy_recordings) the file is also copied to the hub's
    storage (the documents app's backend: S3, or the filesystem) by the `scheduling.recording_copy` task;
    the S3 request and its bytes land in the call log, and the stored bytes are priced per GB-month.
    """

    class Copy(models.TextChoices):
        NONE = "none"  # not asked for (no opt-in when it was booked)
        QUEUED = "queued"  # the task copies it; `storage_key` is chosen before the first byte moves
        COPIED = "copied"
        FAILED = "failed"  # gave up; `copy_error` says why (staff or a refresh may queue it again)

    STATE_FIELD = "copy_status"
    TRANSITIONS = {
        "none": {"queued"},
        "queued": {"copied", "failed"},
        "copied": set(),
        "failed": {"queued"},
    }

    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="recordings")
    external_id = models.CharField(max_length=255)
    file_type = models.CharField(max_length=32, blank=True)
    recording_type = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    download_url = models.URLField(max_length=2000, help_text="The provider's URL; needs the provider's token.")
    recording_start = models.DateTimeField(null=True, blank=True)
    recording_end = models.DateTimeField(null=True, blank=True)
    copy_status = models.CharField(max_length=16, choices=Copy.choices, default=Copy.NONE)
    storage_backend = models.CharField(max_length=8, blank=True, help_text='"s3" or "local" (the documents backend).')
    storage_key = models.CharField(max_length=255, blank=True)
    storage_class = models.CharField(max_length=32, blank=True)
    stored_bytes = models.PositiveBigIntegerField(default=0)
    copied_at = models.DateTimeField(null=True, blank=True)
    copy_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["recording_start", "pk"]
        constraints = [models.UniqueConstraint(fields=["meeting", "external_id"], name="recording_unique_external")]

    def __str__(self):
        return f"{self.file_type} {self.external_id} of {self.meeting_id}"


class MeetingAttendance(models.Model):
    """One stretch of one person in one meeting, from the provider's participant joined / left events.

    Someone who drops out and rejoins has two rows. Both events carry the join time (Zoom's and Webex's
    left events repeat it), so a left that arrives before its joined, a duplicate, or a replay all land
    on the same row. `participant_key` is the provider's id for the person in this meeting (Zoom's
    participant_uuid / user id, Webex's participant id), or their email: guests without an email count too.
    """

    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="attendance")
    participant = models.ForeignKey(
        MeetingParticipant, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    participant_key = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    name = models.CharField(max_length=200, blank=True)
    joined_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["joined_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["meeting", "participant_key", "joined_at"],
                condition=Q(joined_at__isnull=False),
                name="attendance_one_row_per_join",
            )
        ]
        indexes = [models.Index(fields=["meeting", "participant_key"], name="attendance_person")]

    def __str__(self):
        return f"{self.participant_key} in {self.meeting_id} {self.joined_at}-{self.left_at}"


class MeetingSubscription(models.Model):
    """A push subscription the hub holds at a provider for one meeting's lifecycle events.

    Zoom and Webex send lifecycle webhooks app-wide; Google Meet and Teams need one subscription per
    meeting: a Google Workspace Events subscription on the Meet space (delivered through Pub/Sub), or a
    Microsoft Graph subscription on the online meeting's resources. `external_id` is the provider's
    subscription name / id; `kind` says which resource it watches. They expire: the renewal sweep
    extends the ones whose meeting may still produce events and lets the rest lapse.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        FAILED = "failed"
        ENDED = "ended"

    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="subscriptions")
    provider = models.CharField(max_length=16, choices=Meeting.Provider.choices)
    kind = models.CharField(max_length=32, help_text="Which resource it watches, e.g. meet_space or graph_recordings.")
    external_id = models.CharField(max_length=255, blank=True, db_index=True)
    resource = models.CharField(max_length=1000, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    client_state = EncryptedTextField(blank=True)
    last_error = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["meeting", "kind"], name="meeting_subscription_one_per_kind"),
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=~Q(external_id=""),
                name="meeting_subscription_unique_external",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="meeting_subscription_due")]

    def __str__(self):
        return f"{self.provider} {self.kind} subscription of meeting {self.meeting_id}"


class MeetingCreate(models.Model):
    """One meeting create under an Idempotency-Key: its create id, whether an attempt's outcome is unknown, and
    the meeting once made (a retry after the API forgot the key is answered with it: services.create_once).

    Zoom and Webex: neither API takes an idempotency key or a client-chosen id. Every attempt's meeting carries the create id
    where the provider keeps a caller's own value (Zoom: a custom key; Webex: an integration tag). This row is
    marked before each POST; a retry that finds an attempt in doubt (it timed out, lost its connection, got a
    5xx, or its process died mid-call) looks the meeting up by that id and adopts it instead of making a second
    one, so only a create after such a failure pays for the lookup (services.meetings).
    """

    class Doubt(models.TextChoices):
        NONE = "", "none"
        IN_FLIGHT = "in_flight", "a create call started and has not come back"
        AMBIGUOUS = "ambiguous", "a create call timed out, lost its connection or got a 5xx"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="meeting_creates")
    provider = models.CharField(max_length=16, choices=Meeting.Provider.choices)
    # calendars.create_id over owner, connection, key and the whole request: another request under the same key
    # is another create, never answered with this one's meeting.
    create_id = models.CharField(max_length=64)
    doubt = models.CharField(max_length=16, choices=Doubt.choices, default=Doubt.NONE, blank=True)
    # Set with the meeting's row, in one transaction: a finished create. Goes with the meeting (a create undone
    # after a failed registration deletes both, so its retry makes the meeting again).
    meeting = models.OneToOneField(
        Meeting, null=True, blank=True, on_delete=models.CASCADE, related_name="create_record"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "create_id"], name="meeting_create_unique_id")]

    def __str__(self):
        return f"{self.provider} create {self.create_id} ({'made' if self.meeting_id else self.doubt or 'not made'})"


class SchedulingPreference(models.Model):
    """A user's choices about their meetings; no row means the defaults."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scheduling_preference"
    )
    copy_recordings = models.BooleanField(
        default=False,
        help_text="Copy each completed recording to the hub's storage (S3), at the storage price per GB-month.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"scheduling preferences of {self.owner_id}"


# --- Calendars (issue 19 points 1-3): the user's Google and Microsoft calendars, kept in sync ----------------


class Calendar(OutboxMixin):
    """One calendar of an OAuth connection, with what keeps its events in sync (cursor and push registration).

    `sync_due` is set by a push notification (and by the API after a write) and cleared when a sync starts;
    with the outbox mixin a notification whose task message was lost is still synced by the sweeper.
    """

    class Kind(models.TextChoices):
        GOOGLE = "google"
        MICROSOFT = "microsoft"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendars")
    connection = models.ForeignKey("integrations.Connection", on_delete=models.CASCADE, related_name="calendars")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    external_id = models.CharField(max_length=512, help_text="The provider's calendar id.")
    name = models.CharField(max_length=255, blank=True)
    primary = models.BooleanField(default=False)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA zone (Graph's Windows names mapped).")
    # Google: owner / writer / reader / freeBusyReader; Graph: canEdit -> writer, else reader.
    access_role = models.CharField(max_length=32, blank=True)
    # Google's nextSyncToken; Graph's @odata.deltaLink (a URL with its own state token).
    sync_token = models.TextField(blank=True)
    delta_link = models.TextField(blank=True)
    sync_due = models.BooleanField(default=False)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    full_sync_at = models.DateTimeField(null=True, blank=True)
    # Google events.watch channel: our channel id, Google's resource id, when it lapses.
    channel_id = models.CharField(max_length=64, blank=True, db_index=True)
    channel_resource_id = models.CharField(max_length=255, blank=True)
    channel_expires_at = models.DateTimeField(null=True, blank=True)
    # Graph subscription on /me/calendars/{id}/events with its clientState (encrypted).
    subscription_id = models.CharField(max_length=128, blank=True, db_index=True)
    subscription_expires_at = models.DateTimeField(null=True, blank=True)
    client_state = EncryptedTextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-primary", "name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "external_id"], name="calendar_unique_external"),
        ]

    def __str__(self):
        return f"{self.kind} calendar {self.name or self.external_id}"


class CalendarEvent(models.Model):
    """One event as the provider last said: a single event, a series master (with its RRULE), or one
    occurrence of a series (`recurring_event_id` + `original_start`) that was changed or cancelled.

    Timed events: `start`/`end` are UTC instants and `time_zone` the IANA zone the event is kept in (its
    wall-clock for recurrence across DST). All-day events: `start_date`/`end_date` (end exclusive, as both
    providers give it), never converted through a zone, so they never shift by a day.
    """

    class Status(models.TextChoices):
        CONFIRMED = "confirmed"
        TENTATIVE = "tentative"
        CANCELLED = "cancelled"

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="events")
    external_id = models.CharField(max_length=1024)
    etag = models.CharField(max_length=255, blank=True)
    ical_uid = models.CharField(max_length=1024, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONFIRMED)
    title = models.CharField(max_length=1024, blank=True)
    description = models.TextField(blank=True)
    location = models.CharField(max_length=1024, blank=True)
    all_day = models.BooleanField(default=False)
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    # [{"email", "name", "response_status": needsAction|accepted|declined|tentative, "optional", "organizer"}]
    attendees = models.JSONField(default=list, blank=True)
    # {"use_default": bool, "overrides": [{"method": "popup"|"email", "minutes": int}]}
    reminders = models.JSONField(default=dict, blank=True)
    visibility = models.CharField(max_length=16, default="default")
    # RFC 5545 lines: "RRULE:FREQ=WEEKLY;BYDAY=MO", "EXDATE;TZID=Europe/Berlin:20260309T090000".
    recurrence = models.JSONField(default=list, blank=True)
    recurring_event_id = models.CharField(max_length=1024, blank=True, db_index=True)
    original_start = models.DateTimeField(null=True, blank=True)
    html_link = models.URLField(max_length=2000, blank=True)
    provider_updated_at = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["start", "start_date", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "external_id"], name="calendarevent_unique_external"),
        ]
        indexes = [models.Index(fields=["calendar", "start"], name="calendarevent_window")]

    def __str__(self):
        return f"{self.title or self.external_id} ({self.status})"
