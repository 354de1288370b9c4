from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what to which object, when, from where, and how it ended. Append-only.

    `actor` has no database constraint and is never cascaded: deleting or erasing
    a user must not rewrite history (the row keeps the id and the label it had).
    """

    class Outcome(models.TextChoices):
        OK = "ok"
        DENIED = "denied"
        FAILED = "failed"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=160, help_text='"staff:alice", "user:42" or "system".')
    action = models.CharField(max_length=64, db_index=True, help_text='e.g. "payment.refund", "document.download".')
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.OK)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")


class AuditArchive(models.Model):
    """One archived slice of the trail: the events of one day (part n) as a gzip JSON-lines object in S3.

    Rows are pruned from the database only when this says the object was read
    back and its SHA-256 matched (`verified_at`); on PostgreSQL the trigger
    checks that too, so no session can delete an event no verified archive holds.
    """

    day = models.DateField()
    part = models.PositiveSmallIntegerField(default=1)
    bucket = models.CharField(max_length=255)
    key = models.CharField(max_length=512)
    version_id = models.CharField(max_length=255, blank=True)
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    rows = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, help_text="Hex SHA-256 of the stored (compressed) object.")
    lock_mode = models.CharField(
        max_length=16, blank=True, help_text="GOVERNANCE / COMPLIANCE, empty without Object Lock."
    )
    retain_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    pruned_at = models.DateTimeField(null=True, blank=True)
    pruned_rows = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day", "-part"]
        constraints = [models.UniqueConstraint(fields=["day", "part"], name="audit_archive_day_part")]

    def __str__(self):
        return f"{self.day} part {self.part}: {self.rows} events in s3://{self.bucket}/{self.key}"


class AuditArchiveGap(models.Model):
    """Event ids the archive has not seen in any part: each nightly run archives the events it finds in them
    first (whatever their `at`), then records what is still missing.

    An id is taken when its event is written, an event is seen when its transaction commits: a run can pass
    over an id whose transaction is still open and that commits days later with its old `at` and id. The last
    gap is open-ended (`last_id` empty): every id above the highest one a run has seen. A closed gap goes once it
    holds no event and, on PostgreSQL, no transaction that began before `found_at` is still open (its ids were
    rolled back); until then it is looked at again every night, a primary-key range read.
    """

    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField(null=True, blank=True, help_text="Empty: every id from first_id up.")
    found_at = models.DateTimeField(help_text="Database time just after the run that found it read the trail.")

    class Meta:
        ordering = ["first_id"]

    def __str__(self):
        return f"audit ids {self.first_id}–{self.last_id or '…'} in no archive part"
