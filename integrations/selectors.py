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
    """The live status matrix. Staff also get last success and the 24 h error rate."""
    from . import breaker
    from .models import ProviderCall
    from .registry import all_providers
    from .usage import dashboard_rows

    last_ok = {}
    daily = {}
    if staff:
        daily = {r["provider"]: r for r in dashboard_rows(hours=24)}
        for provider in all_providers():
            row = (
                ProviderCall.objects.filter(provider=provider.name, outcome=ProviderCall.Outcome.OK)
                .order_by("-created_at")
                .values_list("created_at", flat=True)
                .first()
            )
            last_ok[provider.name] = row
    rows = []
    for provider in all_providers():
        rows.append(
            {
                "name": provider.name,
                "service": provider.service,
                "label": provider.label,
                "configured": provider.configured,
                "missing": provider.missing(),
                "circuit": breaker.state(provider.name),
            }
        )
        if staff:
            day = daily.get(provider.name, {})
            rows[-1].update(
                last_success_at=last_ok.get(provider.name),
                calls_24h=day.get("calls", 0),
                error_rate_24h=round(day.get("error_rate", 0.0), 4),
            )
    return rows
