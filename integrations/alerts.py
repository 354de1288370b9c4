"""Raising and resolving alerts. One open alert per `dedupe_key`; repeats count up."""

import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import Alert

logger = logging.getLogger(__name__)


def alert_raise(*, kind, message, provider="", severity=Alert.Severity.WARNING, dedupe_key=None):
    """Open an alert, or count one more occurrence of the open alert with the same key."""
    key = dedupe_key or f"{kind}:{provider}"
    for _ in range(2):
        updated = Alert.objects.filter(dedupe_key=key, resolved_at__isnull=True).update(
            occurrences=F("occurrences") + 1, last_seen_at=timezone.now(), message=message
        )
        if updated:
            return Alert.objects.get(dedupe_key=key, resolved_at__isnull=True)
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    kind=kind, severity=severity, provider=provider, message=message, dedupe_key=key
                )
            logger.warning("alert raised", extra={"alert_kind": kind, "provider": provider, "alert_message": message})
            return alert
        except IntegrityError:
            continue  # another process opened it first; count on it instead
    return Alert.objects.get(dedupe_key=key, resolved_at__isnull=True)


def alert_resolve(*, alert):
    if alert.resolved_at is None:
        alert.resolved_at = timezone.now()
        alert.save(update_fields=["resolved_at"])
    return alert
