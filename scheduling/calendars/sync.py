"""Keeping a calendar's rows current: incremental sync from the stored cursor, and push registration.

Google: `events.list` with the stored syncToken (a 410 Gone means the token
expired: the cursor is wiped and everything is listed again, removing rows the
provider no longer has). Graph: the `events/delta` link (graph/delta.py). Only a
sync with no cursor at all is full; push notifications always run the
incremental one, so duplicates and notifications out of order cost one cheap
request and change nothing.

Push: a Google `events.watch` channel (webhook at /webhooks/google-calendar/,
its token derived from GOOGLE_CALENDAR_CHANNEL_SECRET and the channel id) or a
Graph subscription on /me/calendars/{id}/events (clientState per
subscription, integrations.webhooks.graph). Both lapse (Google: the ttl we
ask, at most Google's limit; Graph: under 3 days for events), so a beat task
renews those that end within CALENDAR_WATCH_RENEW_BEFORE_HOURS.
"""

import datetime as dt
import logging
import secrets

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from integrations import locks
from integrations.errors import DomainError
from integrations.oauth import on_disconnect, on_reconnect
from integrations.webhooks import hmac_sha256_hex
from integrations.webhooks.graph import account_subscribing, new_client_state, unrecorded_subscriptions_delete

from ..models import Calendar, CalendarEvent
from .services import adapter_for, announce, event_store

logger = logging.getLogger(__name__)
LOCK_SECONDS = 300
WATCH_WAIT_SECONDS = 30  # how long a watch waits for another of the same calendar (then a retry, or 503)


def _lock_key(calendar_id):
    return f"calendars:sync-lock:{calendar_id}"


def calendar_sync(*, calendar_id):
    """Bring the calendar's rows up to date; returns the rows that changed. A sync already running for the
    calendar makes this one a no-op that leaves the calendar due (the outbox sends it again)."""
    calendar = Calendar.objects.select_related("connection").filter(pk=calendar_id).first()
    if calendar is None:
        return []
    if not cache.add(_lock_key(calendar_id), 1, LOCK_SECONDS):
        Calendar.objects.filter(pk=calendar_id).update(sync_due=True)
        return []
    try:
        # Cleared before reading: a notification that arrives during the read makes the calendar due again.
        Calendar.objects.filter(pk=calendar_id).update(sync_due=False)
        conn, adapter = calendar.connection, adapter_for(calendar)
        cursor = calendar.sync_token if calendar.kind == Calendar.Kind.GOOGLE else calendar.delta_link
        try:
            result = adapter.events_sync(conn, calendar, sync_token=cursor)
        except adapter.SyncTokenExpired:
            logger.info("calendar sync token expired: full resync", extra={"calendar": calendar_id})
            result = adapter.events_sync(conn, calendar, sync_token="")
        changed = []
        with transaction.atomic():
            seen = set()
            for data in result.events:
                row, did_change = event_store(calendar, data)
                seen.add(row.external_id)
                if did_change:
                    changed.append(row)
            gone = CalendarEvent.objects.filter(calendar=calendar, external_id__in=result.removed)
            if result.full:
                gone = CalendarEvent.objects.filter(calendar=calendar).exclude(external_id__in=seen)
                if result.window is not None:
                    # Only what the window covered is known to be gone; a series shows through its occurrences.
                    lo, hi = result.window
                    inside = Q(all_day=False, start__gte=lo, start__lt=hi) | Q(
                        all_day=True, start_date__gte=lo.date(), start_date__lt=hi.date()
                    )
                    gone = gone.filter(inside, recurrence=[])
            for row in gone.exclude(status=CalendarEvent.Status.CANCELLED):
                row.status = CalendarEvent.Status.CANCELLED
                row.save(update_fields=["status", "synced_at"])
                changed.append(row)
            # A series deleted at the provider ends every occurrence of it, but a sync may hear only of the series
            # (Google reports the deleted master, not its changed occurrences, which are events of their own): the
            # rows of its occurrences go with it, as they do when the series is deleted through the hub.
            ended = [r.external_id for r in changed if r.status == CalendarEvent.Status.CANCELLED and r.recurrence]
            for row in CalendarEvent.objects.filter(calendar=calendar, recurring_event_id__in=ended).exclude(
                status=CalendarEvent.Status.CANCELLED
            ):
                row.status = CalendarEvent.Status.CANCELLED
                row.save(update_fields=["status", "synced_at"])
                changed.append(row)
            now = timezone.now()
            cursor_field = "sync_token" if calendar.kind == Calendar.Kind.GOOGLE else "delta_link"
            fields = {cursor_field: result.cursor, "last_synced_at": now}
            if result.full:
                fields["full_sync_at"] = now
            Calendar.objects.filter(pk=calendar_id).update(**fields)
        # Outside the transaction: meetings that follow an event call their providers.
        announce(calendar, changed, origin="sync")
        return changed
    finally:
        cache.delete(_lock_key(calendar_id))


def calendar_mark_due(*, calendar_ids):
    """A notification said these calendars changed: mark them due and queue their sync (after commit)."""
    from integrations.task_base import enqueue_on_commit

    from ..tasks import calendar_sync_task

    for pk in calendar_ids:
        Calendar.objects.filter(pk=pk).update(sync_due=True)
        enqueue_on_commit(calendar_sync_task, pk)


# --- Push ---------------------------------------------------------------------------------------


def channel_token(channel_id, secret=None):
    """The token a Google channel carries: HMAC of its id with the channel secret (one leaked token opens no
    other channel; a rotation keeps old and new secrets side by side until every channel was renewed)."""
    secret = secret or settings.GOOGLE_CALENDAR_CHANNEL_SECRET.split(",")[0].strip()
    return hmac_sha256_hex(secret, f"google-calendar-channel:{channel_id}")


def _google_watch(calendar):
    if not settings.GOOGLE_CALENDAR_CHANNEL_SECRET:
        raise DomainError(
            503,
            "push_not_configured",
            "Google Calendar push is not configured; set GOOGLE_CALENDAR_CHANNEL_SECRET.",
            missing=["GOOGLE_CALENDAR_CHANNEL_SECRET"],
        )
    adapter = adapter_for(calendar)
    old_channel, old_resource = calendar.channel_id, calendar.channel_resource_id
    channel_id = secrets.token_hex(16)
    address = settings.APP_URL.rstrip("/") + reverse("google-calendar-webhook")
    resource_id, expires = adapter.watch(
        calendar.connection,
        calendar,
        channel_id=channel_id,
        token=channel_token(channel_id),
        address=address,
        ttl_seconds=settings.CALENDAR_WATCH_TTL_SECONDS,
    )
    Calendar.objects.filter(pk=calendar.pk).update(
        channel_id=channel_id, channel_resource_id=resource_id, channel_expires_at=expires
    )
    if old_channel:
        # Google channels cannot be extended: the new one is open, the old one is closed (gone already = fine).
        adapter.channel_stop(calendar.connection, channel_id=old_channel, resource_id=old_resource)


def _graph_watch(calendar):
    """Renew the calendar's subscription, or make one. Under the calendar's lock, as one run's cleanup must not
    delete the subscription another run has just made and not yet stored; the run that waited reads the calendar
    again and renews what the other made. (Another hub user's row for the same Outlook calendar: the account's
    lock, in _graph_subscribe.)"""
    with locks.held(
        "calendar-watch",
        calendar.pk,
        seconds=LOCK_SECONDS,
        wait=WATCH_WAIT_SECONDS,
        provider="microsoft_calendar",
        busy="another watch of this calendar is running",
        retry_after=WATCH_WAIT_SECONDS,
    ):
        _graph_subscribe(Calendar.objects.select_related("connection").get(pk=calendar.pk))


def _graph_subscribe(calendar):
    adapter = adapter_for(calendar)
    expires_at = timezone.now() + dt.timedelta(minutes=settings.CALENDAR_GRAPH_SUBSCRIPTION_MINUTES)
    if calendar.subscription_id:
        renewed = adapter.subscription_renew(calendar.connection, calendar.subscription_id, expires_at=expires_at)
        if renewed is not None:
            Calendar.objects.filter(pk=calendar.pk).update(subscription_expires_at=renewed)
            return
    client_state = new_client_state()
    url = settings.APP_URL.rstrip("/") + reverse("outlook-calendar-webhook")
    # The cleanup, the create and its row under the account's lock too: another hub user's connection to the same
    # Outlook account has a row of its own for this calendar, and its cleanup, run while this create was in flight,
    # deleted the subscription this row was about to record (Graph lists each one's to the other).
    with account_subscribing(
        calendar.connection,
        notification_url=url,
        scope=calendar.external_id,
        seconds=LOCK_SECONDS,
        wait=WATCH_WAIT_SECONDS,
        provider="microsoft_calendar",
    ):
        _delete_unrecorded_subscriptions(calendar, adapter, url)
        subscription_id, expires = adapter.subscribe(
            calendar.connection, calendar, notification_url=url, client_state=client_state, expires_at=expires_at
        )
        calendar.subscription_id, calendar.subscription_expires_at, calendar.client_state = (
            subscription_id,
            expires,
            client_state,
        )
        calendar.save(update_fields=["subscription_id", "subscription_expires_at", "client_state"])


def _delete_unrecorded_subscriptions(calendar, adapter, notification_url):
    """The user's subscriptions on this calendar's events at our URL that no calendar row records (its
    subscription_id, as the webhook knows it; any hub user's row for the same Outlook calendar counts), deleted.
    Only this calendar's resource is looked at: another calendar's watch may be making its own right now."""
    conn = calendar.connection
    listed = adapter.subscriptions_to(conn, calendar, notification_url=notification_url)
    recorded = Calendar.objects.filter(kind=Calendar.Kind.MICROSOFT, subscription_id__in=listed).values_list(
        "subscription_id", flat=True
    )
    # subscription_delete: gone already is done.
    unrecorded_subscriptions_delete(listed, recorded, lambda sid: adapter.subscription_delete(conn, sid))


def calendar_watch(*, calendar_id):
    """Start or renew push for the calendar (Google channel / Graph subscription)."""
    calendar = Calendar.objects.select_related("connection").get(pk=calendar_id)
    if calendar.kind == Calendar.Kind.GOOGLE:
        _google_watch(calendar)
    else:
        _graph_watch(calendar)
    return Calendar.objects.get(pk=calendar_id)


def _renewal_due(now=None):
    """Calendars whose channel or subscription ends within CALENDAR_WATCH_RENEW_BEFORE_HOURS, and channels stored
    without the resource id Google answered (the webhook refuses every delivery of theirs) or without an expiry
    (it ends all the same, when is unknown)."""
    horizon = (now or timezone.now()) + dt.timedelta(hours=settings.CALENDAR_WATCH_RENEW_BEFORE_HOURS)
    channel_due = Q(channel_expires_at__lt=horizon) | Q(channel_expires_at__isnull=True) | Q(channel_resource_id="")
    return Calendar.objects.filter(connection__status="active").filter(
        (channel_due & ~Q(channel_id="")) | (Q(subscription_expires_at__lt=horizon) & ~Q(subscription_id=""))
    )


def calendar_renewal_due(*, calendar_id):
    """Whether the calendar's push still needs the renewal a beat queued (another run may have renewed it since)."""
    return _renewal_due().filter(pk=calendar_id).exists()


def calendars_renew_due(*, now=None):
    """Beat: queue the renewal of channels and subscriptions that end within CALENDAR_WATCH_RENEW_BEFORE_HOURS.

    A renewal still waiting for a worker is queued again by the next beat; whichever runs second finds the
    channel renewed and stops (calendar_watch_task(renewal=True)), or each would open a channel of its own."""
    from integrations.task_base import enqueue_on_commit

    from ..tasks import calendar_watch_task

    ids = sorted(_renewal_due(now).values_list("pk", flat=True))
    for pk in ids:
        enqueue_on_commit(calendar_watch_task, pk, renewal=True)
    return len(ids)


def calendars_rewindow_due(*, now=None):
    """Beat: restart the Graph delta of calendars whose window is getting old.

    A calendarView delta keeps the window of the request that began it (startDateTime/endDateTime are given
    once, then the delta link carries them): it never reports an event beyond the first window's end, however
    much time has passed. So every CALENDAR_GRAPH_WINDOW_RENEW_DAYS the cursor is dropped and the calendar marked
    due; its next sync (through the outbox) reads a fresh window around today, which also tells which rows of
    that window are gone."""
    from integrations.task_base import enqueue_on_commit

    from ..tasks import calendar_sync_task

    stale = (now or timezone.now()) - dt.timedelta(days=settings.CALENDAR_GRAPH_WINDOW_RENEW_DAYS)
    due = (
        Calendar.objects.filter(kind=Calendar.Kind.MICROSOFT, connection__status="active")
        .exclude(delta_link="")
        .filter(Q(full_sync_at__lt=stale) | Q(full_sync_at__isnull=True))
    )
    ids = list(due.values_list("pk", flat=True))
    for pk in ids:
        Calendar.objects.filter(pk=pk).update(delta_link="", sync_due=True)
        enqueue_on_commit(calendar_sync_task, pk)
    return len(ids)


def calendar_unwatch(calendar):
    """Before a connection's tokens go: close the channel / delete the subscription (gone already = done)."""
    adapter = adapter_for(calendar)
    if calendar.kind == Calendar.Kind.GOOGLE and calendar.channel_id:
        adapter.channel_stop(
            calendar.connection, channel_id=calendar.channel_id, resource_id=calendar.channel_resource_id
        )
    elif calendar.kind == Calendar.Kind.MICROSOFT and calendar.subscription_id:
        adapter.subscription_delete(calendar.connection, calendar.subscription_id)


@on_disconnect
def calendars_unwatch(connection):
    """oauth.on_disconnect: close the connection's channels and subscriptions while its tokens still work."""
    for calendar in Calendar.objects.filter(connection=connection).select_related("connection"):
        calendar_unwatch(calendar)


@on_reconnect
def calendars_catch_up(connection):
    """oauth.on_reconnect: a sync that failed while the connection needed authorization reads what it missed."""
    calendar_mark_due(calendar_ids=list(Calendar.objects.filter(connection=connection).values_list("pk", flat=True)))
