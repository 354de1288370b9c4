"""Processing stored events: one handler run per event, retried with backoff, never lost."""

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..metrics import webhook_events
from ..models import Alert, WebhookEvent
from ..states import transition
from .registry import handler_for

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status


class WebhookIgnored(Exception):
    """Raised by a handler for an event it deliberately skips (e.g. older than what we already hold)."""


class WebhookPermanentError(Exception):
    """Raised by a handler when retrying cannot help (the event references something that cannot exist)."""


@dataclass(frozen=True)
class ProcessResult:
    status: str  # processed, failed, ignored, or skipped (locked elsewhere, already done, gone)
    retry_in: float | None = None  # seconds until the next attempt, for a failure that will be retried


def _processable():
    # A failed event with no next attempt has used its retries (or failed
    # permanently); only a replay brings it back.
    return Q(status=Status.RECEIVED) | Q(status=Status.FAILED, next_attempt_at__isnull=False)


def retry_delay(attempts):
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempts-1)))."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return random.uniform(0, ceiling)


def _error_text(exc):
    return f"{type(exc).__name__}: {exc}"[:2000]


def webhook_event_process(*, event_id):
    """Run the registered handler for one event, at most once at a time and never after it succeeded.

    The row is locked with SELECT ... FOR UPDATE SKIP LOCKED inside one
    transaction: a second worker given the same event skips it instead of
    waiting, then sees it processed. The handler runs in a savepoint, so its
    writes commit together with `processed`, or roll back while the failure is
    still recorded on the row.
    """
    final_failure = None
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update(skip_locked=True).filter(_processable(), pk=event_id).first()
        if event is None:
            return ProcessResult("skipped")
        now = timezone.now()
        handler = handler_for(event.provider, event.type)
        if handler is None:
            event.status = Status.IGNORED
            event.last_error = f"No handler is registered for {event.provider} {event.type!r}."
            event.next_attempt_at = None
            event.processed_at = now
            event.save(update_fields=["status", "last_error", "next_attempt_at", "processed_at"])
            webhook_events.labels(event.provider, "ignored").inc()
            return ProcessResult("ignored")

        event.status = Status.PROCESSING  # only visible inside this transaction, to the handler
        event.attempts += 1
        retry_in = None
        recovered = False
        try:
            with transaction.atomic():
                handler(event)
        except WebhookIgnored as exc:
            event.status = Status.IGNORED
            event.last_error = str(exc)[:2000]
            event.processed_at = now
            event.next_attempt_at = None
        except Exception as exc:
            event.status = Status.FAILED
            event.last_error = _error_text(exc)
            permanent = isinstance(exc, WebhookPermanentError)
            if permanent or event.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
                event.next_attempt_at = None
                final_failure = event
            else:
                retry_in = retry_delay(event.attempts)
                event.next_attempt_at = now + timedelta(seconds=retry_in)
            logger.warning(
                "webhook handler failed",
                exc_info=True,
                extra={"provider": event.provider, "event_id": event.event_id, "attempts": event.attempts},
            )
        else:
            recovered = bool(event.last_error)  # it had failed before: a retry or a replay worked
            event.status = Status.PROCESSED
            event.processed_at = timezone.now()
            event.next_attempt_at = None
            event.last_error = ""
        event.save(update_fields=["status", "attempts", "last_error", "processed_at", "next_attempt_at"])

    webhook_events.labels(event.provider, event.status).inc()
    if event.status == Status.PROCESSED and recovered:
        from ..alerts import webhook_alert_resolve_if_clear

        webhook_alert_resolve_if_clear(provider=event.provider, event_type=event.type)
    if final_failure is not None:
        from ..alerts import alert_raise

        alert_raise(
            kind=Alert.Kind.WEBHOOK_FAILED,
            provider=event.provider,
            severity=Alert.Severity.CRITICAL,
            message=(
                f"Webhook {event.provider} {event.type} {event.event_id} failed after {event.attempts} "
                f"attempt(s): {event.last_error[:300]}. Fix the cause, then replay it in admin."
            ),
            dedupe_key=f"webhook_failed:{event.provider}:{event.type}",
        )
    return ProcessResult(event.status, retry_in)


def webhook_replay(*, event):
    """Process an event again from scratch (admin "Replay"): a fresh retry budget, enqueued on commit."""
    from .inbox import enqueue_processing

    with transaction.atomic():
        fresh = {"attempts": 0, "processed_at": None, "next_attempt_at": timezone.now()}
        if not transition(WebhookEvent, event.pk, Status.RECEIVED, **fresh):
            # Already received (never processed yet): a fresh budget all the same.
            WebhookEvent.objects.filter(pk=event.pk, status=Status.RECEIVED).update(**fresh)
        enqueue_processing(event)
    event.refresh_from_db()
    return event


def webhook_mark_ignored(*, event, reason="Marked ignored by staff."):
    moved = transition(WebhookEvent, event.pk, Status.IGNORED, next_attempt_at=None, last_error=reason)
    event.refresh_from_db()
    return moved


def webhook_requeue_stale(*, limit=500):
    """Enqueue again every event whose processing is overdue by WEBHOOK_REQUEUE_AFTER_SECONDS.

    Covers a broker that was down when the event arrived, a worker that died
    mid-task (its transaction rolled back, so the row is `received` again) and
    a lost retry message. Re-sending is safe: processing skips locked and
    finished rows. Returns how many were enqueued.
    """
    from .inbox import _enqueue

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_REQUEUE_AFTER_SECONDS)
    pending = Q(status__in=[Status.RECEIVED, Status.PROCESSING]) | Q(
        status=Status.FAILED, next_attempt_at__isnull=False
    )
    overdue = Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, received_at__lt=cutoff)
    ids = list(
        WebhookEvent.objects.filter(pending & overdue).order_by("received_at").values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    # Stamp first, so the next beat tick does not send them again before a worker had its chance.
    WebhookEvent.objects.filter(pk__in=ids).update(next_attempt_at=now)
    for pk in ids:
        _enqueue(pk)
    logger.info("requeued stale webhook events", extra={"count": len(ids)})
    return len(ids)
