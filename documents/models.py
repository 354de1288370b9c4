"""Documents and their versions. Every stored object is one DocumentVersion row.

The client sees a Document (owner-scoped) whose `current_version` is what a
download gives by default; older versions stay downloadable and restorable.
Objects live under random keys on the backend recorded on the row, so
switching the hub from the filesystem to S3 leaves older files readable.
"""

from django.conf import settings
from django.db import models

from integrations.outbox import OutboxMixin


class Document(OutboxMixin, models.Model):
    class State(models.TextChoices):
        ACTIVE = "active"
        # Gone for the client; the purge task is removing the stored objects.
        DELETING = "deleting"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents")
    current_version = models.ForeignKey(
        "DocumentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "state", "-created_at"], name="document_owner_idx"),
            models.Index(fields=["state", "deleted_at"], name="document_deleting_idx"),
        ]

    def __str__(self):
        name = self.current_version.filename if self.current_version_id else "(no version)"
        return f"{name} (#{self.pk})"


class DocumentVersion(OutboxMixin, models.Model):
    class Backend(models.TextChoices):
        S3 = "s3"
        LOCAL = "local"

    class ScanStatus(models.TextChoices):
        PENDING = "pending"
        SCANNING = "scanning"
        CLEAN = "clean"
        INFECTED = "infected"
        # No scanner configured (CLAMD_URL unset).
        UNSCANNED = "unscanned"
        # The scanner could not be reached after every retry.
        ERROR = "error"

    # The scan's state machine, applied by integrations.states.transition.
    STATE_FIELD = "scan_status"
    TRANSITIONS = {
        # to error: the scan task gave up (the scanner stayed unreachable through every retry)
        ScanStatus.PENDING: {ScanStatus.SCANNING, ScanStatus.UNSCANNED, ScanStatus.ERROR},
        # back to pending: the scanner was unreachable, the task retries
        ScanStatus.SCANNING: {ScanStatus.CLEAN, ScanStatus.INFECTED, ScanStatus.PENDING, ScanStatus.ERROR},
        ScanStatus.CLEAN: set(),
        ScanStatus.INFECTED: set(),
        # an admin rescan (a scanner was added, or it came back)
        ScanStatus.UNSCANNED: {ScanStatus.PENDING},
        ScanStatus.ERROR: {ScanStatus.PENDING},
    }

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=128)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    backend = models.CharField(max_length=8, choices=Backend.choices)
    # Random, never derived from anything the client sent.
    storage_key = models.CharField(max_length=255, unique=True)
    storage_class = models.CharField(max_length=32, blank=True)
    scan_status = models.CharField(max_length=16, choices=ScanStatus.choices, default=ScanStatus.PENDING)
    scan_detail = models.CharField(max_length=255, blank=True)
    scanned_at = models.DateTimeField(null=True, blank=True)
    # Set when an infected object has been moved under DOCUMENT_QUARANTINE_PREFIX
    # (storage_key then names the quarantined object); services.version_quarantine.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["document", "number"], name="document_version_number_unique")]
        indexes = [
            # The sweep's look-up of infected versions whose quarantine task was lost.
            models.Index(
                fields=["scanned_at"],
                name="docversion_unquarantined_idx",
                condition=models.Q(scan_status="infected", quarantined_at__isnull=True),
            )
        ]

    def __str__(self):
        return f"{self.filename} v{self.number}"
