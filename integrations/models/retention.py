from django.db import models


class RetentionRun(models.Model):
    """What one retention policy removed in one nightly run (integrations.retention): the console shows the last."""

    policy = models.CharField(max_length=64, db_index=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    cutoff = models.DateTimeField(null=True, blank=True, help_text="Data older than this was removed.")
    removed = models.PositiveBigIntegerField(default=0, help_text="Rows deleted or fields cleared.")
    batches = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["policy", "-started_at"], name="retention_policy_started")]

    def __str__(self):
        return f"{self.policy} {self.started_at:%Y-%m-%d}: {self.removed} removed"
