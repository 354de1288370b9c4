from django.conf import settings
from django.db import models

# Latency histogram buckets of the roll-up (upper bounds in ms); the last is +inf.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class ProviderCall(models.Model):
    """One row per attempt at an outbound provider call (the call log)."""

    class Outcome(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        RATE_LIMITED = "rate_limited"
        CIRCUIT_OPEN = "circuit_open"
        TIMEOUT = "timeout"

    provider = models.CharField(max_length=32)
    operation = models.CharField(max_length=64)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="provider_calls"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(default=0)
    attempt = models.PositiveSmallIntegerField(default=1)
    scope = models.CharField(max_length=128, blank=True)
    provider_request_id = models.CharField(max_length=128, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    units = models.JSONField(default=dict, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    retryable = models.BooleanField(null=True, blank=True)
    related_type = models.CharField(max_length=64, blank=True)
    related_id = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=128, blank=True, help_text="The hub's request id (X-Request-ID).")
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # "last 24 h per provider" (dashboard, admin filter) and "per owner this month" (usage, calls API)
            models.Index(fields=["provider", "-created_at"], name="pcall_provider_created"),
            models.Index(fields=["owner", "-created_at"], name="pcall_owner_created"),
            models.Index(fields=["-created_at"], name="pcall_created"),
            # the admin's outcome filter ("errors, newest first") on a large log
            models.Index(fields=["outcome", "-created_at"], name="pcall_outcome_created"),
            models.Index(fields=["related_type", "related_id"], name="pcall_related"),
        ]

    def __str__(self):
        return f"{self.provider}.{self.operation} #{self.attempt} {self.outcome}"


class UsageRollup(models.Model):
    """Hourly totals per (provider, owner), kept current as calls are recorded.

    Usage figures and the dashboard read this, never a scan of the call log,
    so they stay fast with millions of ProviderCall rows. Latency is kept as a
    histogram (one counter per bucket) so percentiles can be estimated.
    """

    hour = models.DateTimeField()
    provider = models.CharField(max_length=32)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    calls = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    units = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    latency_ms_sum = models.FloatField(default=0)
    # One counter per latency bucket (LATENCY_BUCKETS_MS, then +inf): plain
    # columns, so recording a call is a single atomic `UPDATE ... SET b = b + 1`.
    for _i in range(len(LATENCY_BUCKETS_MS) + 1):
        locals()[f"lat_b{_i}"] = models.PositiveBigIntegerField(default=0)
    del _i

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "provider", "owner"], name="rollup_unique_key"),
            models.UniqueConstraint(
                fields=["hour", "provider"], condition=models.Q(owner__isnull=True), name="rollup_unique_no_owner"
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "hour"], name="rollup_owner_hour"),
            models.Index(fields=["hour", "provider"], name="rollup_hour_provider"),
        ]

    def __str__(self):
        return f"{self.provider} {self.hour:%Y-%m-%d %H}:00 {self.calls} calls"
