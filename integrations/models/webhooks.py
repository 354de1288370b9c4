from django.db import models
from django.db.models import F
from django.db.models.functions import Coalesce


class WebhookEvent(models.Model):
    """One inbound webhook delivery, stored before any processing.

    `(provider, event_id)` is unique, so a provider's retry of the same event
    inserts nothing. The raw payload is kept as received; handlers read it.
    """

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSING = "processing"
        PROCESSED = "processed"
        FAILED = "failed"
        IGNORED = "ignored"

    # Applied by integrations.states.transition (replay, mark ignored) and, under
    # the row lock, by the processing loop. `processing` is only ever seen inside
    # the processing transaction; replay brings any finished event back to received.
    TRANSITIONS = {
        Status.RECEIVED: {Status.PROCESSING, Status.PROCESSED, Status.FAILED, Status.IGNORED},
        Status.PROCESSING: {Status.PROCESSED, Status.FAILED, Status.IGNORED, Status.RECEIVED},
        Status.FAILED: {Status.PROCESSING, Status.PROCESSED, Status.IGNORED, Status.RECEIVED},
        Status.PROCESSED: {Status.RECEIVED},
        Status.IGNORED: {Status.RECEIVED},
    }

    provider = models.CharField(max_length=32)
    event_id = models.CharField(max_length=255, help_text="The provider's id for the event (our de-duplication key).")
    type = models.CharField(max_length=128, blank=True)
    payload = models.JSONField(default=dict)
    # A safe subset chosen by the provider's verifier: never Authorization,
    # cookies or shared secrets (see integrations.webhooks.safe_headers).
    headers = models.JSONField(default=dict, blank=True)
    signature_verified = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)
    # The provider's own event time; handlers use it to ignore stale events.
    occurred_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # When the next processing attempt is due (set on receipt, on retry, on
    # replay; cleared when done). The requeue beat task re-enqueues events whose
    # attempt is overdue, so a lost task message never loses the event.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The provider object the event is about (a Stripe PaymentIntent id, ...),
    # from the provider's registered ordering key; "" = no ordering constraint.
    # Events of one object are applied in event-time order: one waits while an
    # earlier event of its object is unprocessed or failed-but-retrying.
    object_key = models.CharField(max_length=255, blank=True, default="")
    # The tasks its handler queued that no outbox row sends again ([task name, args, kwargs] each), kept
    # from the batch's commit until the broker has taken them: a worker that dies between the commit and
    # the publish, or a broker that refuses it, leaves them here for the beat sweeper
    # (processing.webhook_follow_ups_send), so a processed event never loses its follow-up work.
    follow_ups = models.JSONField(default=list, blank=True)
    follow_ups_due_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweeper sends the follow-ups again if the broker has not taken them."
    )

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="webhookevent_unique_provider_event"),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="webhookevent_status_idx"),
            models.Index(fields=["provider", "type"], name="webhookevent_type_idx"),
            models.Index(fields=["status", "next_attempt_at"], name="webhookevent_due_idx"),
            # The drain asks "does an earlier event of this object still wait?" for every claimed event:
            # only pending rows with a key, so the index stays as small as the backlog.
            # Only the few rows whose follow-ups are not known to be sent: the sweeper's look stays cheap.
            models.Index(
                fields=["follow_ups_due_at"],
                condition=models.Q(follow_ups_due_at__isnull=False),
                name="webhookevent_followups_idx",
            ),
            # The drain's claim: a provider's ready events in event-time order, the first hundred. Only pending
            # rows, in the claim's order, so the claim reads its batch and stops instead of reading every pending
            # row (payloads included) of the provider to sort them, past every processed row still in the table.
            models.Index(
                F("provider"),
                Coalesce("occurred_at", "received_at"),
                F("id"),
                condition=models.Q(status__in=["received", "failed"]),
                name="webhookevent_ready_idx",
            ),
            models.Index(
                fields=["provider", "object_key"],
                condition=models.Q(status__in=["received", "processing", "failed"]) & ~models.Q(object_key=""),
                name="webhookevent_pending_obj_idx",
            ),
        ]

    def __str__(self):
        return f"{self.provider} {self.type or '?'} {self.event_id} ({self.status})"
