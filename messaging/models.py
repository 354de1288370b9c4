"""Twilio SMS and voice: messages, calls, opt-outs, business hours and forwarding rules.

Our fields and Twilio's stay apart: `external_id` is Twilio's SID (MessageSid,
CallSid), unique when set; `raw` keeps the last payload Twilio sent about the
row beside the normalised fields. Money is a Decimal in USD (Twilio reports
prices as negative decimals in `price_unit`; we store the absolute amount).
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from integrations.outbox import OutboxMixin

# [0-9], not \d, as the API's check (services.common.E164_RE): \d also matches other scripts' digits.
E164 = RegexValidator(r"^\+[1-9][0-9]{1,14}$", "Use E.164 format: + then country code and number, e.g. +14155550100.")


class Conversation(models.Model):
    """Every SMS with one remote number, for one owner, in order."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sms_conversations")
    remote_number = models.CharField(max_length=20, validators=[E164])
    last_message_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "remote_number"], name="sms_conversation_unique")]
        indexes = [models.Index(fields=["remote_number", "-last_message_at"], name="sms_conv_remote_recent")]

    def __str__(self):
        return f"{self.remote_number} ({self.owner_id})"


class SendDoubt(models.TextChoices):
    """Whether Twilio may hold the message or call though we have no SID (its Messages and
    Calls APIs take no idempotency key)."""

    NONE = "", "none"
    IN_FLIGHT = "in_flight", "a create call started and has not come back"
    AMBIGUOUS = "ambiguous", "a create call timed out, lost its connection or got a 5xx"


class CreateAttempt(models.Model):
    """Set just before each create call on Twilio; a retry looks the message or call up on
    Twilio before creating it again when the last call's outcome is unknown."""

    SendDoubt = SendDoubt

    send_doubt = models.CharField(max_length=16, choices=SendDoubt.choices, default=SendDoubt.NONE, blank=True)
    send_started_at = models.DateTimeField(null=True, blank=True, help_text="When the first create call started.")
    send_attempted_at = models.DateTimeField(null=True, blank=True, help_text="When the latest create call started.")

    class Meta:
        abstract = True


class SmsMessage(OutboxMixin, CreateAttempt):
    class Direction(models.TextChoices):
        OUTBOUND = "outbound"
        INBOUND = "inbound"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued (in the hub)"
        SENDING = "sending", "sending (handed to Twilio)"
        SENT = "sent"
        DELIVERED = "delivered"
        UNDELIVERED = "undelivered"
        FAILED = "failed"
        CANCELED = "canceled"
        RECEIVED = "received"
        # Inbound on a hub number several users text from, and more than one of them talks with the sender:
        # which user the reply is for cannot be told, so it is given to none (staff read it in admin).
        UNATTRIBUTED = "unattributed", "received, owner unknown (staff)"

    # Forward-only: a late or duplicated callback never moves a row back.
    # sending -> queued is only our own limiter deferral (nothing was sent);
    # failed -> queued only staff's re-queue of a message Twilio never accepted
    # (services.sms_requeue; no Twilio status maps to queued).
    TRANSITIONS = {
        "queued": {"sending", "failed", "canceled"},
        "sending": {"queued", "sent", "delivered", "undelivered", "failed", "canceled"},
        "sent": {"delivered", "undelivered", "failed"},
        "undelivered": {"delivered"},  # a carrier's late delivery receipt wins
        "delivered": set(),
        # queued: staff send again a message Twilio never accepted; sent/delivered/undelivered: a message the send
        # task gave up on in doubt (no SID) whose status callback shows Twilio had it (sms_status_apply guards it).
        "failed": {"queued", "sent", "delivered", "undelivered"},
        "canceled": set(),
        "received": set(),
        # Staff give the message to one of the users who talk with its sender (services.sms_unattributed_assign,
        # the only writer: no Twilio status maps to received, and it moves only an unowned inbound row).
        "unattributed": {"received"},
    }
    FINAL = frozenset({"delivered", "undelivered", "failed", "canceled", "received", "unattributed"})

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="sms_messages"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.OUTBOUND)
    to_number = models.CharField(max_length=20)
    from_number = models.CharField(
        max_length=40,
        blank=True,
        help_text="The sender's number (or sender ID). Sent through a messaging service: empty until Twilio reports "
        "the number the service chose.",
    )
    messaging_service_sid = models.CharField(
        max_length=34, blank=True, help_text="The Twilio messaging service (MG...) that picks the sender, if any."
    )
    body = models.TextField(max_length=1600)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True, help_text="Twilio MessageSid.")
    segments = models.PositiveSmallIntegerField(null=True, blank=True)
    num_media = models.PositiveSmallIntegerField(
        default=0, help_text="Media files (MMS) an inbound message came with; the files stay at Twilio."
    )
    price_usd = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    price_final = models.BooleanField(default=False, help_text="Twilio's billed price (else the hub's estimate).")
    cost_recorded = models.BooleanField(default=False, help_text="Its cost is booked on a ProviderCall (once).")
    error_code = models.CharField(max_length=16, blank=True)
    error_message = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="sms_owner_created"),
            models.Index(fields=["status", "created_at"], name="sms_status_created"),
        ]

    def __str__(self):
        return f"SMS {self.direction} {self.to_number} {self.status}"


class OptOut(models.Model):
    """A number that texted STOP: never messaged again until it texts START."""

    phone_number = models.CharField(max_length=20, unique=True, validators=[E164])
    active = models.BooleanField(default=True)
    keyword = models.CharField(max_length=16, blank=True, help_text="The keyword that last changed it.")
    opted_out_at = models.DateTimeField(null=True, blank=True)
    opted_in_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SMS opt-out"

    def __str__(self):
        return f"{self.phone_number} ({'opted out' if self.active else 'opted in'})"


class BusinessHours(models.Model):
    """When calls are answered: a time zone, weekly hours and holidays. One schedule is active."""

    name = models.CharField(max_length=80, default="Office")
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. America/New_York.")
    is_active = models.BooleanField(default=True)
    voicemail_greeting = models.CharField(
        max_length=500, default="Sorry, we cannot take your call right now. Please leave a message after the tone."
    )

    class Meta:
        verbose_name_plural = "business hours"
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_hours")
        ]

    def __str__(self):
        return f"{self.name} ({self.time_zone})"

    def clean(self):
        from django.core.exceptions import ValidationError

        from integrations.timezones import zone_or_none

        if zone_or_none(self.time_zone) is None:
            raise ValidationError({"time_zone": f"Unknown time zone {self.time_zone!r}."})


class WeeklyHours(models.Model):
    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    schedule = models.ForeignKey(BusinessHours, on_delete=models.CASCADE, related_name="weekly")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField()
    closes = models.TimeField()

    class Meta:
        ordering = ["weekday", "opens"]
        verbose_name_plural = "weekly hours"

    def __str__(self):
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"


class Holiday(models.Model):
    schedule = models.ForeignKey(BusinessHours, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["schedule", "date"], name="holiday_unique_date")]

    def __str__(self):
        return f"{self.date} {self.name}"


class ForwardingRule(models.Model):
    """Who answers an in-hours call: the first active rule (by priority) that matches caller and time."""

    name = models.CharField(max_length=80)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower runs first.")
    is_active = models.BooleanField(default=True)
    caller_prefix = models.CharField(
        max_length=20, blank=True, help_text="Matches callers whose number starts with this (blank = any caller)."
    )
    # Local time in the business-hours time zone; blank = all open hours.
    start_time = models.TimeField(null=True, blank=True)
    end_time = models.TimeField(null=True, blank=True)
    target_number = models.CharField(max_length=20, validators=[E164], help_text="The assistant on duty.")
    ring_timeout = models.PositiveSmallIntegerField(default=20, help_text="Seconds to ring before the fallback.")
    fallback_number = models.CharField(
        max_length=20, blank=True, validators=[E164], help_text="Tried after no answer; blank = voicemail."
    )

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self):
        return f"{self.name} -> {self.target_number}"


class CallLog(OutboxMixin, CreateAttempt):
    class Direction(models.TextChoices):
        OUTBOUND = "outbound"
        INBOUND = "inbound"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued (in the hub)"
        DIALING = "dialing", "dialing (handed to Twilio)"
        RINGING = "ringing"
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed"
        BUSY = "busy"
        NO_ANSWER = "no_answer", "no answer"
        FAILED = "failed"
        CANCELED = "canceled"

    TRANSITIONS = {
        "queued": {"dialing", "ringing", "in_progress", "completed", "busy", "no_answer", "failed", "canceled"},
        "dialing": {"queued", "ringing", "in_progress", "completed", "busy", "no_answer", "failed", "canceled"},
        "ringing": {"in_progress", "completed", "busy", "no_answer", "failed", "canceled"},
        "in_progress": {"completed", "failed"},
        "completed": set(),
        "busy": set(),
        "no_answer": set(),
        # A call the place task gave up on in doubt (no SID) whose status callback shows Twilio placed it
        # (call_status_apply guards it: a call Twilio itself failed stays failed).
        "failed": {"ringing", "in_progress", "completed", "busy", "no_answer"},
        "canceled": set(),
    }
    FINAL = frozenset({"completed", "busy", "no_answer", "failed", "canceled"})

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="call_logs"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    from_number = models.CharField(max_length=40)
    to_number = models.CharField(max_length=40)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    twilio_status = models.CharField(max_length=16, blank=True, help_text="Twilio's last CallStatus, verbatim.")
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True, help_text="Twilio CallSid.")
    say = models.TextField(blank=True, help_text="What an outbound call says.")
    record = models.BooleanField(default=False)
    # Inbound routing
    forwarded_to = models.CharField(max_length=20, blank=True)
    forwarding_rule = models.ForeignKey(ForwardingRule, null=True, blank=True, on_delete=models.SET_NULL)
    routing = models.CharField(
        max_length=32, blank=True, help_text="forward, fallback, voicemail, after_hours, holiday"
    )
    voicemail = models.BooleanField(default=False)
    # Outcome and cost
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    price_usd = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    price_final = models.BooleanField(default=False, help_text="Twilio's billed price (else the hub's estimate).")
    cost_recorded = models.BooleanField(default=False, help_text="Its cost is booked on a ProviderCall (once).")
    error_code = models.CharField(max_length=16, blank=True)
    error_message = models.TextField(blank=True)
    # Recording and transcription
    recording_sid = models.CharField(max_length=64, blank=True)
    recording_url = models.CharField(max_length=500, blank=True)
    recording_duration = models.PositiveIntegerField(null=True, blank=True)
    transcription_sid = models.CharField(max_length=64, blank=True)
    transcription_status = models.CharField(max_length=16, blank=True)
    transcript = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="call_owner_created")]

    def __str__(self):
        return f"Call {self.direction} {self.from_number} -> {self.to_number} {self.status}"
