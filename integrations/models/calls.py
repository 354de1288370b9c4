from django.conf import settings
from django.db import models

from ..units import BY_COLUMN, UNIT_COLUMNS

# Latency histogram of ProviderRollup: upper bounds in ms, a quarter octave
# apart from 1 ms to ~131 s (2 ** (i / 4)); one more bucket holds anything slower.
LATENCY_BOUNDS_MS = tuple(2 ** (i / 4) for i in range(69))


def _unit_field(column):
    if BY_COLUMN[column].money:
        return models.DecimalField(max_digits=18, decimal_places=2, default=0)
    return models.PositiveBigIntegerField(default=0)


class ProviderCall(models.Model):
    """One row per attempt at an outbound provider call (the call log)."""

    class Outcome(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        RATE_LIMITED = "rate_limited"
        CIRCUIT_OPEN = "circuit_open"
        TIMEOUT = "timeout"
        # The caller went away mid-call (an API client that disconnected, a server shutting down): not the
        # provider's failure, so not in error rates, failure alerts or the breaker.
        CANCELLED = "cancelled"

    provider = models.CharField(max_length=32)
    operation = models.CharField(max_length=64)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="provider_calls",
        # pcall_owner_created (owner first) serves every lookup by owner; a second index on owner_id alone
        # cost each provider call's INSERT ~0.04 ms of its ~1.1 on a 1M-row log (bench_gateway).
        db_index=False,
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
    # Set only on rows a Celery worker handed off through Redis (integrations.gateway.handoff): the row's own
    # id, so a batch written twice inserts each row once. NULL elsewhere, and NULLs are not in the index.
    handoff_id = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["handoff_id"], condition=models.Q(handoff_id__isnull=False), name="pcall_handoff_once"
            ),
        ]
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

    Per-owner usage (the usage API, budgets, top spenders) reads this, never a
    scan of the call log, so it stays fast with millions of ProviderCall rows.
    Each unit of integrations.units has its own column: units never add up.
    """

    hour = models.DateTimeField()
    provider = models.CharField(max_length=32)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    calls = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0, help_text="Calls whose outcome was not ok.")
    cost_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    latency_ms_sum = models.FloatField(default=0)
    for _column in UNIT_COLUMNS:
        locals()[_column] = _unit_field(_column)
    del _column

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


class ProviderRollup(models.Model):
    """Hourly totals per provider (all owners), kept current as calls are recorded.

    The console's overview, money page and charts read this: a 30-day window
    is at most 720 rows per provider, whatever the call volume. Calls are
    counted per outcome, and latency is a fine histogram (LATENCY_BOUNDS_MS,
    a quarter octave per bucket), so p50 / p95 come out in milliseconds,
    interpolated within one bucket, instead of as a coarse bucket's bound.
    """

    hour = models.DateTimeField()
    provider = models.CharField(max_length=32)
    calls = models.PositiveBigIntegerField(default=0)
    ok = models.PositiveBigIntegerField(default=0)
    error = models.PositiveBigIntegerField(default=0)
    rate_limited = models.PositiveBigIntegerField(default=0)
    timeout = models.PositiveBigIntegerField(default=0)
    circuit_open = models.PositiveBigIntegerField(default=0)
    cancelled = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    latency_ms_sum = models.FloatField(default=0)
    for _column in UNIT_COLUMNS:
        locals()[_column] = _unit_field(_column)
    # One counter per latency bucket (LATENCY_BOUNDS_MS, then +inf): plain
    # columns, so recording a call is one atomic `UPDATE ... SET l7 = l7 + 1`.
    for _i in range(len(LATENCY_BOUNDS_MS) + 1):
        locals()[f"l{_i}"] = models.PositiveBigIntegerField(default=0)
    del _i, _column

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "provider"], name="provider_rollup_unique")]

    def __str__(self):
        return f"{self.provider} {self.hour:%Y-%m-%d %H}:00 {self.calls} calls"
