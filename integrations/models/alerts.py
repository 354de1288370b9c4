from django.conf import settings
from django.db import models
from django.db.models import Q

from ..fields import EncryptedTextField


class Alert(models.Model):
    """Something staff should look at. De-duplicated while open by `dedupe_key`."""

    class Kind(models.TextChoices):
        PROVIDER_FAILURE_RATE = "provider_failure_rate"
        BUDGET_THRESHOLD = "budget_threshold"
        WEBHOOK_FAILED = "webhook_failed"
        TASK_FAILED = "task_failed"
        QUOTA = "quota"
        DISPUTE = "dispute"
        PAYMENT_ANOMALY = "payment_anomaly"
        SECURITY = "security"
        PRICE_DROP = "price_drop"
        CONNECTION_REAUTH = "connection_reauth"
        # Raised (and resolved) by the beat task integrations.alerting.thresholds:
        RATE_LIMITED = "rate_limited"
        WEBHOOK_SIGNATURE = "webhook_signature"
        OAUTH_REFRESH = "oauth_refresh"
        QUEUE_BACKLOG = "queue_backlog"
        WORKER_DOWN = "worker_down"
        COST_PROJECTION = "cost_projection"
        OPERATIONS = "operations"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    provider = models.CharField(max_length=32, blank=True)
    message = models.TextField()
    dedupe_key = models.CharField(max_length=255)
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Who took it (acknowledged) and who closed it, from the console; empty when the hub resolved it itself.
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When channels were last told about it (opened or reminded): the reminder clock.
    notified_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"], condition=Q(resolved_at__isnull=True), name="alert_one_open_per_key"
            )
        ]
        indexes = [models.Index(fields=["resolved_at", "-created_at"], name="alert_open_idx")]

    def __str__(self):
        return f"[{self.severity}] {self.kind} {self.provider}: {self.message[:60]}"

    @property
    def is_open(self):
        return self.resolved_at is None


class Budget(models.Model):
    """A monthly spending limit per provider, optionally per owner (alerts at 80 % and 100 %)."""

    provider = models.CharField(max_length=32)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    monthly_limit_usd = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "owner"], name="budget_unique_provider_owner"),
            models.UniqueConstraint(
                fields=["provider"], condition=Q(owner__isnull=True), name="budget_unique_provider_global"
            ),
        ]

    def __str__(self):
        who = self.owner or "everyone"
        return f"{self.provider} budget for {who}: ${self.monthly_limit_usd}/month"


SEVERITY_RANK = {Alert.Severity.INFO: 0, Alert.Severity.WARNING: 1, Alert.Severity.CRITICAL: 2}


class AlertChannel(models.Model):
    """Somewhere alerts are sent: an email list, a Slack-compatible incoming webhook, or a signed webhook.

    Channels from settings (ALERT_EMAIL_TO, ALERT_SLACK_WEBHOOK_URL,
    ALERT_WEBHOOK_URL) work without a row; rows add more, each with its own
    severity floor and, optionally, the kinds it wants.
    """

    class Kind(models.TextChoices):
        EMAIL = "email"
        SLACK = "slack"
        WEBHOOK = "webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    target = models.CharField(
        max_length=1000, help_text="Email: addresses separated by commas. Slack / webhook: the https URL."
    )
    secret = EncryptedTextField(blank=True, help_text="Webhook only: the HMAC-SHA256 signing secret.")
    min_severity = models.CharField(max_length=16, choices=Alert.Severity.choices, default=Alert.Severity.WARNING)
    kinds = models.JSONField(default=list, blank=True, help_text="Alert kinds to send; empty sends every kind.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.kind})"

    @property
    def key(self):
        return f"channel:{self.pk}"


class AlertDelivery(models.Model):
    """One notice (opened, reminder, resolved) of one alert to one channel, sent by a task with retries.

    Unique per (alert, channel, notice, sequence): however many times an open
    alert recurs, a channel hears of it once, then once per reminder.
    """

    class Notice(models.TextChoices):
        OPENED = "opened"
        REMINDER = "reminder"
        RESOLVED = "resolved"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        # A reminder that was queued while the alert was open and unacknowledged, and found at send time that
        # staff had since acknowledged or resolved it: not posted (last_error says which and when).
        SKIPPED = "skipped", "Skipped (alert taken)"

    # A failed notice goes back to pending only when staff send it again (after fixing the channel).
    TRANSITIONS = {
        "pending": {"sent", "failed", "skipped"},
        "sent": set(),
        "failed": {"pending"},
        "skipped": set(),
    }

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel_key = models.CharField(max_length=64, help_text='"settings:email" or "channel:<id>".')
    notice = models.CharField(max_length=16, choices=Notice.choices)
    sequence = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a run took it to send, cleared when that send ends: another run (the sweep's, a redelivered task)
    # leaves a row claimed less than notify.STALL_SECONDS ago, so a notice is posted once. An older claim is a
    # run that died mid-send.
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "alert deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel_key", "notice", "sequence"], name="alert_delivery_once")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="alert_delivery_due")]

    def __str__(self):
        return f"{self.notice} of alert {self.alert_id} to {self.channel_key}: {self.status}"
