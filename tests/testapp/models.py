"""A minimal domain row with the queued -> sending -> sent/failed state machine,
for testing the task base and redelivery before (and beside) the real apps."""

from django.db import models


class Shipment(models.Model):
    STATE_FIELD = "state"
    TRANSITIONS = {
        "queued": {"sending", "failed"},
        "sending": {"sent", "failed", "queued"},
        "sent": set(),
        "failed": set(),
    }

    state = models.CharField(max_length=16, default="queued")
    body = models.JSONField(default=dict)
    external_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
