"""Raising and resolving alerts. One open alert per `dedupe_key`; repeats count up.

Opening and resolving tell the alert channels (integrations.alerting.notify):
once per alert, however often it recurs while open.
"""

import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import Alert
from .redaction import redact

logger = logging.getLogger(__name__)


def alert_raise(*, kind, message, provider="", severity=Alert.Severity.WARNING, dedupe_key=None, notify=True):
    """Open an alert, or count one more occurrence of the open alert with the same key.

    `notify=False` tells no channel that it opened (and so starts no reminder clock): the admin's test alert,
    whose sender picks the channels it goes to. The message is redacted (it goes to Slack, email and webhooks,
    and often quotes a provider's or a handler's error).
    """
    message = redact(message)
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
            if notify:
                _notify("notify_opened", alert)
            return alert
        except IntegrityError:
            continue  # another process opened it first; count on it instead
    return Alert.objects.get(dedupe_key=key, resolved_at__isnull=True)


def alert_test_key(user_id):
    """The key of the test alerts a staff member sends from the admin (integrations.privacy redacts them)."""
    return f"operations:test:{user_id}"


def alert_resolve(*, alert, by=None):
    """Resolve an open alert (once: a second call changes nothing) and send the resolution notice."""
    now = timezone.now()
    updated = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=now, resolved_by=by)
    if updated:
        alert.resolved_at, alert.resolved_by = now, by
        _notify("notify_resolved", [alert.pk])
    return alert


def _notify(name, arg):
    # A notice that cannot be queued must not cost the caller its own work (a provider call's log row,
    # a webhook's answer): the alert itself is in the database, staff see it in admin.
    from .alerting import notify  # the senders import the gateway, which imports this module

    try:
        with transaction.atomic():
            getattr(notify, name)(arg)
    except Exception:  # noqa: BLE001
        logger.exception("alert notice not queued")


def webhook_alert_resolve_if_clear(*, provider, event_type):
    """Resolve the webhook_failed alert for (provider, type) once no event of that kind is left failed.

    Called when a failed event is processed after all (a replay or a retry),
    so the alert stays open while any of its events still needs a replay.
    """
    from .models import WebhookEvent

    key = f"webhook_failed:{provider}:{event_type}"
    if not Alert.objects.filter(dedupe_key=key, resolved_at__isnull=True).exists():
        return 0
    if WebhookEvent.objects.filter(provider=provider, type=event_type, status=WebhookEvent.Status.FAILED).exists():
        return 0
    ids = list(Alert.objects.filter(dedupe_key=key, resolved_at__isnull=True).values_list("pk", flat=True))
    resolved = Alert.objects.filter(pk__in=ids, resolved_at__isnull=True).update(resolved_at=timezone.now())
    if resolved:
        _notify("notify_resolved", ids)
        logger.info("alert resolved", extra={"alert_kind": Alert.Kind.WEBHOOK_FAILED, "provider": provider})
    return resolved
