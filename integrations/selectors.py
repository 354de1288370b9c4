from django.db.models import Max
from django.utils import timezone

from .models import WorkerHeartbeat


def heartbeat_age_seconds():
    """Seconds since any worker last answered, or None if none ever has."""
    last = WorkerHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
    if last is None:
        return None
    return (timezone.now() - last).total_seconds()


def provider_status_list(*, staff=False):
    from .registry import all_providers

    rows = []
    for provider in all_providers():
        rows.append(
            {
                "name": provider.name,
                "service": provider.service,
                "label": provider.label,
                "configured": provider.configured,
                "missing": provider.missing(),
                "circuit": "closed",
            }
        )
    return rows
