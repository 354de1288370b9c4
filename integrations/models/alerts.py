from django.conf import settings
from django.db import models
from django.db.models import Q


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
