from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class AiRequest(models.Model):
    """One completion a client asked for (the attempts behind it are ProviderCall rows with the same request_id)."""

    class Outcome(models.TextChoices):
        OK = "ok"
        CACHED = "cached"
        FAILED = "failed"  # every candidate failed, or a permanent error
        CLIENT_CLOSED = "client_closed"  # a streaming client went away before the end

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ai_requests")
    request_id = models.CharField(max_length=128, blank=True, help_text="The hub's request id (X-Request-ID).")
    task = models.CharField(max_length=32, blank=True)
    requested_model = models.CharField(max_length=128, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=128, blank=True)
    stream = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_code = models.CharField(max_length=64, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    # Input written to the provider's prompt cache (part of input_tokens, billed above the input price).
    cache_write_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    latency_ms = models.FloatField(default=0)
    fallbacks = models.JSONField(default=list, blank=True)
    # Only with AI_LOG_PROMPTS=true: prompts and answers may hold personal data.
    prompt = models.JSONField(null=True, blank=True)
    response_text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="aireq_owner_created")]

    def __str__(self):
        return f"AI request {self.pk} {self.provider}/{self.model} {self.outcome}"


class AiUsageMonthly(models.Model):
    """Tokens and cost per user, month, provider and model, kept current as requests finish.

    The usage endpoint and the budget check read this small table, never a
    scan of the call log.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ai_usage")
    month = models.DateField(help_text="First day of the month (UTC).")
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    requests = models.PositiveIntegerField(default=0)
    cached_requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    # Input written to the provider's prompt cache (part of input_tokens, billed above the input price).
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        verbose_name = "AI usage (monthly)"
        verbose_name_plural = "AI usage (monthly)"
        constraints = [
            models.UniqueConstraint(fields=["owner", "month", "provider", "model"], name="aiusage_unique_key")
        ]

    def __str__(self):
        return f"{self.owner_id} {self.month:%Y-%m} {self.provider}/{self.model}: ${self.cost_usd}"


class AiBudget(models.Model):
    """A user's own monthly AI budget and answer-length cap, overriding the AI_USER_* defaults."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ai_budget")
    monthly_limit_usd = models.DecimalField(max_digits=12, decimal_places=2)
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Largest max_tokens this user may ask for; empty: AI_USER_MAX_TOKENS."
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "AI budget"

    def __str__(self):
        return f"AI budget for {self.owner}: ${self.monthly_limit_usd}/month"


class AiSpend(models.Model):
    """A user's AI spend this month and the cost held back for requests still running.

    The budget check is one conditional UPDATE on this row: a request reserves
    its largest possible cost (the prompt's estimate plus max_tokens of
    answer, at the dearest model it may use) only while spent + reserved +
    that stays within the budget, then settles to what it really cost. So
    twenty concurrent requests cannot each see the same remaining budget.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ai_spend")
    month = models.DateField(help_text="First day of the month (UTC).")
    spent_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    reserved_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        verbose_name = "AI spend (monthly)"
        verbose_name_plural = "AI spend (monthly)"
        constraints = [models.UniqueConstraint(fields=["owner", "month"], name="aispend_unique_owner_month")]

    def __str__(self):
        return f"{self.owner_id} {self.month:%Y-%m}: ${self.spent_usd} spent, ${self.reserved_usd} reserved"


class AiFreeModel(models.Model):
    """A (provider, model) with no price that staff accept as free; any other unpriced model is refused."""

    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    note = models.CharField(max_length=200, blank=True, help_text="Why it is free (e.g. a provider's free tier).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "AI model marked free"
        verbose_name_plural = "AI models marked free"
        constraints = [models.UniqueConstraint(fields=["provider", "model"], name="aifreemodel_unique")]

    def __str__(self):
        return f"{self.provider}/{self.model} (free)"


class CachedAnswer(models.Model):
    """An answer of the answer cache (ai.services.cache) where there is no Redis: `make run`, one machine.

    Not Django's local-memory cache: that is one per process, and the erasure that must delete a user's
    answers (they quote what the user asked) runs in the worker, not in the web process that cached them.
    A table of the hub's own database is seen by every process, and found by owner.
    """

    key = models.CharField(max_length=128, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    value = models.JSONField(encoder=DjangoJSONEncoder)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"cached AI answer {self.pk} of user {self.owner_id}"
