"""Thin Celery tasks over scheduling services (calendar sync, recording copies); ids only, safe to run twice."""

import logging

from celery import shared_task
from django.db.models import Q

from integrations import outbox
from integrations.task_base import ProviderTask

from . import recordings
from .models import Calendar, MeetingRecording

logger = logging.getLogger(__name__)


@shared_task(bind=True, base=ProviderTask, name="scheduling.calendar_sync", ignore_result=True)
def calendar_sync_task(self, calendar_id):
    """Incremental sync of one calendar (push notifications and the API's writes queue this)."""
    from .calendars.sync import calendar_sync

    calendar_sync(calendar_id=calendar_id)


@shared_task(bind=True, base=ProviderTask, name="scheduling.calendar_watch", ignore_result=True)
def calendar_watch_task(self, calendar_id, renewal=False):
    from .calendars.sync import calendar_renewal_due, calendar_watch

    if renewal and not calendar_renewal_due(calendar_id=calendar_id):
        return  # renewed since the beat queued this (a beat repeats a renewal still waiting for a worker)
    if Calendar.objects.filter(pk=calendar_id, connection__status="active").exists():
        calendar_watch(calendar_id=calendar_id)


@shared_task(name="scheduling.calendar_watch_renew_due", ignore_result=True)
def calendar_watch_renew_due():
    from .calendars.sync import calendars_renew_due, calendars_rewindow_due

    renewed = calendars_renew_due()
    calendars_rewindow_due()
    return renewed


@shared_task(bind=True, base=ProviderTask, provider="zoom", name="scheduling.zoom_meeting_delete", ignore_result=True)
def zoom_meeting_delete_task(self, zoom_meeting_id, owner_id):
    """Delete at Zoom a meeting whose create the hub took back (services.meetings._undo_create); gone = done."""
    from .providers import zoom

    zoom.meeting_delete(meeting_id=zoom_meeting_id, notify=False, owner=owner_id)


# A calendar a notification marked due is synced until a sync has started since: a lost message is re-sent.
outbox.register(Calendar, calendar_sync_task, where=Q(sync_due=True))


def _copy_give_up(task, exc, recording_id):
    recordings.recording_copy_give_up(recording_id=recording_id, error=exc)


# No fixed provider: a download error retries on the meeting provider's policy, an upload error on S3's.
@shared_task(bind=True, base=ProviderTask, give_up=_copy_give_up, name="scheduling.recording_copy")
def recording_copy(self, recording_id):
    return recordings.recording_copy(recording_id=recording_id)


outbox.register(MeetingRecording, recording_copy, due_states=(MeetingRecording.Copy.QUEUED,))


# --- Teams lifecycle (scheduling.teams_lifecycle): Graph subscriptions per meeting, artifacts, attendance -------


@shared_task(bind=True, base=ProviderTask, provider="teams", name="scheduling.teams_subscribe", ignore_result=True)
def teams_subscribe_task(self, meeting_id, retry=()):
    from .teams_lifecycle import meeting_subscribe

    meeting_subscribe(meeting_id=meeting_id, retry=tuple(retry))


@shared_task(bind=True, base=ProviderTask, provider="teams", name="scheduling.teams_unsubscribe", ignore_result=True)
def teams_unsubscribe_task(self, meeting_id):
    from .teams_lifecycle import meeting_unsubscribe

    meeting_unsubscribe(meeting_id=meeting_id)


@shared_task(bind=True, base=ProviderTask, provider="teams", name="scheduling.teams_artifact", ignore_result=True)
def teams_artifact_task(self, meeting_id, kind, artifact_id):
    from .teams_lifecycle import artifact_book

    return artifact_book(meeting_id=meeting_id, kind=kind, artifact_id=artifact_id)


@shared_task(bind=True, base=ProviderTask, provider="teams", name="scheduling.teams_catch_up", ignore_result=True)
def teams_catch_up_task(self, meeting_id):
    from .teams_lifecycle import artifacts_catch_up

    artifacts_catch_up(meeting_id=meeting_id)


@shared_task(bind=True, base=ProviderTask, provider="teams", name="scheduling.teams_attendance", ignore_result=True)
def teams_attendance_task(self, meeting_id):
    from .teams_lifecycle import attendance_fetch

    return attendance_fetch(meeting_id=meeting_id)


@shared_task(name="scheduling.teams_subscriptions_renew_due", ignore_result=True)
def teams_subscriptions_renew_due():
    from .teams_lifecycle import subscriptions_renew_due

    return subscriptions_renew_due()


# --- Google Meet lifecycle events (scheduling.meet_events) ---------------------------------------------


@shared_task(bind=True, base=ProviderTask, provider="google_meet", name="scheduling.meet_subscribe", ignore_result=True)
def meet_subscribe(self, meeting_id):
    from . import meet_events

    return meet_events.meet_subscription_ensure(meeting_id=meeting_id)


@shared_task(bind=True, base=ProviderTask, provider="google_meet", name="scheduling.meet_subscription_renew")
def meet_subscription_renew_task(self, subscription_id):
    from . import meet_events

    return meet_events.meet_subscription_renew(subscription_id=subscription_id)


def _reactivate_give_up(task, exc, subscription_id, **kwargs):
    from . import meet_events

    meet_events.meet_subscription_reactivate_give_up(subscription_id=subscription_id, error=exc)


@shared_task(
    bind=True,
    base=ProviderTask,
    provider="google_meet",
    give_up=_reactivate_give_up,
    name="scheduling.meet_subscription_reactivate",
)
def meet_subscription_reactivate_task(self, subscription_id, owner_cured=False):
    """A subscription Google suspended: reactivated, retried with backoff while Google refuses (meet_events)."""
    from . import meet_events

    return meet_events.meet_subscription_reactivate(subscription_id=subscription_id, owner_cured=owner_cured)


@shared_task(bind=True, base=ProviderTask, provider="google_meet", name="scheduling.meet_subscription_close")
def meet_subscription_close_task(self, subscription_id):
    from . import meet_events

    return meet_events.meet_subscription_close(subscription_id=subscription_id)


@shared_task(bind=True, base=ProviderTask, provider="google_meet", name="scheduling.meet_event_apply")
def meet_event_apply(self, event_id):
    """One stored Meet event (the inbox handler queued it: provider reads stay out of the batch transaction)."""
    from . import meet_events

    return meet_events.meet_event_apply(event_id=event_id)


@shared_task(bind=True, base=ProviderTask, provider="google_meet", name="scheduling.meet_reconcile")
def meet_reconcile(self, meeting_id):
    from . import meet_events

    return meet_events.meet_meeting_reconcile(meeting_id=meeting_id)


@shared_task(name="scheduling.meet_subscriptions_due", ignore_result=True)
def meet_subscriptions_due():
    from . import meet_events

    return meet_events.meet_subscriptions_due()


@shared_task(name="scheduling.meeting_subscriptions_due", ignore_result=True)
def meeting_subscriptions_due():
    """The hourly upkeep of every MeetingSubscription, by each provider's own rules (renew while the meeting may
    still produce events, re-create what the provider lost, let the rest lapse). One provider's failure is logged
    and does not keep the other's from running."""
    done = {}
    for provider, sweep in (("google_meet", meet_subscriptions_due), ("teams", teams_subscriptions_renew_due)):
        try:
            done[provider] = sweep()
        except Exception:  # noqa: BLE001 - the next hour tries again; the other provider's sweep must still run
            logger.exception("meeting subscription upkeep failed", extra={"provider": provider})
    return done
