"""Exports and erasures: one row each, with the state a client polls and staff read in admin."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Export(models.Model):
    """One zip of everything the hub holds about `owner`, built by a task and kept PRIVACY_EXPORT_RETENTION_DAYS."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"
        EXPIRED = "expired"

    TRANSITIONS = {
        Status.QUEUED: {Status.BUILDING, Status.FAILED, Status.EXPIRED},
        # A worker lost mid-build leaves `building`; the redelivered task simply builds again.
        Status.BUILDING: {Status.READY, Status.FAILED, Status.EXPIRED},
        Status.READY: {Status.EXPIRED},
        Status.FAILED: {Status.QUEUED, Status.EXPIRED},
        Status.EXPIRED: set(),
    }

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="privacy_exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    include_all_versions = models.BooleanField(default=False, help_text="Every document version, not only the current.")
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent of the apps written.")
    step = models.CharField(max_length=64, blank=True, help_text="The app being written.")
    storage_key = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True, help_text="Files and row counts (no personal data).")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(help_text="When the zip is deleted.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="privacy_export_owner"),
            models.Index(fields=["status", "expires_at"], name="privacy_export_expiry"),
        ]

    def __str__(self):
        return f"export {self.pk} of user {self.owner_id} ({self.status})"


class Erasure(models.Model):
    """One request to erase a user, and the report of what was deleted where (never the personal data itself).

    `subject_id` is a plain number, not a foreign key: the row outlives the user it erased. Kept rows
    that must still belong to someone (invoices, the call log) are handed to `pseudonym`, a fresh
    inactive account with no personal data, so totals per owner still add up.
    """

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"  # deactivated; waiting out the grace period
        RUNNING = "running"
        RETRYING = "retrying"  # a provider deletion failed; tried again later
        DONE = "done"
        FAILED = "failed"  # gave up; an alert says what could not be deleted
        CANCELLED = "cancelled"

    TRANSITIONS = {
        Status.SCHEDULED: {Status.RUNNING, Status.CANCELLED},
        Status.RUNNING: {Status.RETRYING, Status.DONE, Status.FAILED},
        Status.RETRYING: {Status.RUNNING, Status.FAILED},
        Status.FAILED: {Status.RUNNING},
        Status.DONE: set(),
        Status.CANCELLED: set(),
    }
    OPEN = frozenset({Status.SCHEDULED, Status.RUNNING, Status.RETRYING, Status.FAILED})

    subject_id = models.BigIntegerField(db_index=True, help_text="The erased user's id (the row itself is gone).")
    pseudonym = models.CharField(max_length=40, unique=True)
    requested_by_staff = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    requested_at = models.DateTimeField(auto_now_add=True)
    scheduled_for = models.DateTimeField(help_text="When the deletion runs (after the grace period).")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Provider ids of the user's rows, collected before the rows go, for webhook payload redaction;
    # emptied when the erasure is done.
    pending_refs = models.JSONField(default=list, blank=True)
    report = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_id"],
                condition=Q(status__in=["scheduled", "running", "retrying", "failed"]),
                name="privacy_one_open_erasure",
            )
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="privacy_erasure_due")]

    def __str__(self):
        return f"erasure {self.pk} of user {self.subject_id} ({self.status})"


class ErasedReference(models.Model):
    """A keyed digest of one provider id or address of an erased user (never the value itself).

    Kept PRIVACY_LATE_WEBHOOK_DAYS after the erasure: a webhook that names the user and arrives after the
    erasure redacted the payloads (Stripe retries for days; the erasure's own cancels make Stripe send
    events) is processed, then redacted (privacy.erasure.webhooks_redact_late).
    """

    erasure = models.ForeignKey(Erasure, on_delete=models.CASCADE, related_name="erased_references")
    digest = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["erasure", "digest"], name="privacy_erased_ref_once")]

    def __str__(self):
        return f"erased reference of erasure {self.erasure_id}"
