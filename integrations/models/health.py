from django.db import models


class WorkerHeartbeat(models.Model):
    """Stamped by the beat-scheduled `integrations.ping` task; /readyz reads it."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.hostname} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
