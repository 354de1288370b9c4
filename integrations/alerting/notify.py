"""Who hears of an alert, and when: once when it opens, a reminder while it stays open, once when it resolves.

An alert recurring while open only counts up (`alert_raise`); its channels
are told once. Each notice to each channel is an AlertDelivery row, created in
the caller's transaction and sent after commit by `integrations.alert_deliver`;
a row whose task was lost (broker down, worker killed) is sent again by the
evaluation beat task, so a notice is delayed, never lost.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..errors import DomainError
from ..models import Alert, AlertChannel, AlertDelivery
from ..models.alerts import SEVERITY_RANK
from ..states import transition
from .channels import Channel

logger = logging.getLogger(__name__)

# How long a delivery may sit "in flight" before the sweep sends it again.
STALL_SECONDS = 600


def configured_channels():
    """Every enabled channel: those from settings first, then AlertChannel rows."""
    found = []
    floor = settings.ALERT_MIN_SEVERITY
    if settings.ALERT_EMAIL_TO:
        found.append(
            Channel("settings:email", "ALERT_EMAIL_TO", "email", ",".join(settings.ALERT_EMAIL_TO), min_severity=floor)
        )
    if settings.ALERT_SLACK_WEBHOOK_URL:
        found.append(
            Channel(
                "settings:slack",
                "ALERT_SLACK_WEBHOOK_URL",
                "slack",
                settings.ALERT_SLACK_WEBHOOK_URL,
                min_severity=floor,
            )
        )
    if settings.ALERT_WEBHOOK_URL:
        found.append(
            Channel(
                "settings:webhook",
                "ALERT_WEBHOOK_URL",
                "webhook",
                settings.ALERT_WEBHOOK_URL,
                secret=settings.ALERT_WEBHOOK_SECRET,
                min_severity=floor,
            )
        )
    for row in AlertChannel.objects.filter(enabled=True):
        found.append(
            Channel(
                row.key,
                row.name,
                row.kind,
                row.target,
                secret=row.secret or "",
                min_severity=row.min_severity,
                kinds=tuple(row.kinds or ()),
            )
        )
    return found


def channel_by_key(key):
    return next((c for c in configured_channels() if c.key == key), None)


def wants(channel, alert):
    if SEVERITY_RANK.get(alert.severity, 1) < SEVERITY_RANK.get(channel.min_severity, 1):
        return False
    return not channel.kinds or alert.kind in channel.kinds


def _deliver(alert, channel_keys, notice, sequence=0):
    from ..task_base import enqueue_on_commit
    from .tasks import alert_deliver

    now = timezone.now()
    made = []
    for key in channel_keys:
        try:
            with transaction.atomic():
                delivery = AlertDelivery.objects.create(
                    alert=alert, channel_key=key, notice=notice, sequence=sequence, next_attempt_at=now
                )
        except IntegrityError:
            continue  # this notice was already queued for this channel
        made.append(delivery)
        enqueue_on_commit(alert_deliver, delivery.pk)
    return made


def notify_opened(alert):
    keys = [c.key for c in configured_channels() if wants(c, alert)]
    if not keys:
        return []
    made = _deliver(alert, keys, AlertDelivery.Notice.OPENED)
    Alert.objects.filter(pk=alert.pk).update(notified_at=timezone.now())
    return made


def notify_resolved(alert_ids):
    """Tell every channel that heard of these alerts opening that they are resolved."""
    made = []
    for alert in Alert.objects.filter(pk__in=list(alert_ids), resolved_at__isnull=False):
        keys = set(
            AlertDelivery.objects.filter(alert=alert, notice=AlertDelivery.Notice.OPENED).values_list(
                "channel_key", flat=True
            )
        )
        live = {c.key for c in configured_channels()}
        made += _deliver(alert, sorted(keys & live), AlertDelivery.Notice.RESOLVED)
    return made


def reminders_send(*, now=None):
    """Remind the channels of every alert still open, and not acknowledged, ALERT_REMINDER_HOURS after its last
    notice. An acknowledged alert has someone on it (the admin's Acknowledge): paging again is noise; its
    resolution is still sent."""
    if settings.ALERT_REMINDER_HOURS <= 0:
        return 0
    now = now or timezone.now()
    due = now - dt.timedelta(hours=settings.ALERT_REMINDER_HOURS)
    sent = 0
    waiting = Alert.objects.filter(resolved_at__isnull=True, acknowledged_at__isnull=True)
    for alert in waiting.filter(notified_at__lt=due):
        # Claim this reminder: only the process whose UPDATE matched the old clock sends it (and not once
        # someone acknowledged it since it was read).
        claimed = waiting.filter(pk=alert.pk, notified_at=alert.notified_at).update(
            notified_at=now, reminders_sent=F("reminders_sent") + 1
        )
        if not claimed:
            continue
        alert.refresh_from_db()
        keys = [c.key for c in configured_channels() if wants(c, alert)]
        sent += len(_deliver(alert, keys, AlertDelivery.Notice.REMINDER, sequence=alert.reminders_sent))
    return sent


def delivery_send(*, delivery_id):
    """Send one delivery now; ProviderError leaves for the task to retry. Returns the row (or None if gone)."""
    from .channels import send

    delivery = AlertDelivery.objects.select_related("alert").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != AlertDelivery.Status.PENDING:
        return delivery
    if _reminder_withdrawn(delivery):
        return delivery
    channel = channel_by_key(delivery.channel_key)
    if channel is None:
        delivery_fail(delivery_id=delivery.pk, error="The channel was removed or disabled.")
        return delivery
    # Claim the row in one conditional UPDATE: a second run of the same notice (the sweep's, a redelivered or
    # duplicate task) reading it pending while this one waits on the receiver finds it claimed and leaves it,
    # so the notice is posted once. The stall clock moves with the claim, so the sweep leaves it too.
    now = timezone.now()
    claimed = (
        AlertDelivery.objects.filter(pk=delivery.pk, status=AlertDelivery.Status.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - dt.timedelta(seconds=STALL_SECONDS)))
        .update(claimed_at=now, attempts=F("attempts") + 1, next_attempt_at=now + dt.timedelta(seconds=STALL_SECONDS))
    )
    if not claimed:
        logger.info("alert delivery already being sent", extra={"delivery": delivery.pk})
        return delivery
    try:
        send(channel, delivery.alert, delivery.notice)
    except Exception as exc:
        # Released, so this task's retry (or the sweep, once the stall clock runs out) may try again.
        AlertDelivery.objects.filter(pk=delivery.pk, claimed_at=now).update(last_error=str(exc)[:500], claimed_at=None)
        raise
    AlertDelivery.objects.filter(pk=delivery.pk, status=AlertDelivery.Status.PENDING).update(
        status=AlertDelivery.Status.SENT, sent_at=timezone.now(), last_error="", next_attempt_at=None, claimed_at=None
    )
    return delivery


def _reminder_withdrawn(delivery):
    """A reminder is queued while its alert is open and nobody has it; by the time it goes out (its task waited
    in the queue, was retried with backoff, or was lost and swept up) staff may have acknowledged or resolved the
    alert, and paging them about it then is the noise Acknowledge stops. Such a reminder is left `skipped`, with
    why in its last_error (admin: Alert deliveries). Opened and resolved notices still go: they are what a channel
    must hear of each alert, acknowledged or not.

    Read as the send starts (the alert was just loaded with the row): staff acting while the receiver is being
    called cannot be caught, and such a reminder is posted. A row another run has claimed is left to that run."""
    alert = delivery.alert
    if delivery.notice != AlertDelivery.Notice.REMINDER:
        return False
    if alert.resolved_at is not None:
        taken, at = "resolved", alert.resolved_at
    elif alert.acknowledged_at is not None:
        taken, at = "acknowledged", alert.acknowledged_at
    else:
        return False
    why = f"Not sent: the alert was {taken} at {at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC, before it went out."
    stale = timezone.now() - dt.timedelta(seconds=STALL_SECONDS)
    skipped = (
        AlertDelivery.objects.filter(pk=delivery.pk, status=AlertDelivery.Status.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
        .update(status=AlertDelivery.Status.SKIPPED, last_error=why[:500], next_attempt_at=None, claimed_at=None)
    )
    if skipped:
        logger.info("alert reminder not sent: alert taken", extra={"delivery": delivery.pk})
    return True


def delivery_fail(*, delivery_id, error):
    AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING).update(
        status=AlertDelivery.Status.FAILED, last_error=str(error)[:500], next_attempt_at=None
    )
    logger.warning("alert delivery failed", extra={"delivery": delivery_id, "error": str(error)[:200]})


def delivery_resend(*, delivery_id):
    """Staff, once the channel is fixed: send a failed notice again, with a fresh budget of attempts."""
    from ..task_base import enqueue_on_commit
    from .tasks import alert_deliver

    delivery = AlertDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise DomainError(404, "not_found", "No such alert delivery.")
    if channel_by_key(delivery.channel_key) is None:
        raise DomainError(
            409, "channel_gone", "Its channel was removed or disabled; enable the channel first, then send again."
        )
    # The stall clock is set as it moves, so the sweep does not also send it while the task is on its way.
    moved = transition(
        AlertDelivery,
        delivery.pk,
        AlertDelivery.Status.PENDING,
        frm=AlertDelivery.Status.FAILED,
        attempts=0,
        next_attempt_at=timezone.now() + dt.timedelta(seconds=STALL_SECONDS),
    )
    if not moved:
        raise DomainError(
            409, "delivery_not_failed", f"Only a failed delivery can be sent again; this one is {delivery.status}."
        )
    enqueue_on_commit(alert_deliver, delivery.pk)
    return delivery


def deliveries_requeue(*, now=None):
    """Send again the pending deliveries whose task was lost; give up on those out of attempts."""
    from .tasks import alert_deliver

    now = now or timezone.now()
    stale = AlertDelivery.objects.filter(status=AlertDelivery.Status.PENDING, next_attempt_at__lt=now)
    stale.filter(attempts__gte=settings.ALERT_DELIVERY_MAX_ATTEMPTS).update(
        status=AlertDelivery.Status.FAILED, next_attempt_at=None
    )
    ids = list(stale.values_list("pk", flat=True)[:500])
    for pk in ids:
        # The stall clock moves first, so two sweeps do not both send it.
        AlertDelivery.objects.filter(pk=pk).update(next_attempt_at=now + dt.timedelta(seconds=STALL_SECONDS))
        alert_deliver.apply_async(args=[pk])
    return len(ids)
