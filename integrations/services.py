from django.utils import timezone

from .models import WorkerHeartbeat


def heartbeat_stamp(*, hostname):
    WorkerHeartbeat.objects.update_or_create(hostname=hostname, defaults={"seen_at": timezone.now()})
