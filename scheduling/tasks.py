"""Thin Celery tasks over scheduling services (calendar sync, recording copies); ids only, safe to run twice."""

from celery import shared_task
from django.db.models import Q

from integrations import outbox
from integrations.task_base import ProviderTask

from . import recordings
from .models import Calendar, MeetingRecording


@shared_task(bind=True, base=ProviderTask, name="scheduling.calendar_sync", ignore_result=True)
def calendar_sync_task(self, calendar_id):
    """Incremental sync of one calendar (push notifications and the API's writes queue this)."""
    from .calendars.sync import calendar_sync

    calendar_sync(calendar_id=calendar_id)


@shared_task(bind=True, base=ProviderTask, name="scheduling.calendar_watch", ignore_result=True)
def calendar_watch_task(self, calendar_id):
    from .calendars.sync import calendar_watch

    if Calendar.objects.filter(pk=calendar_id, connection__status="active").exists():
        calendar_watch(calendar_id=calendar_id)


@shared_task(name="scheduling.calendar_watch_renew_due", ignore_result=True)
def calendar_watch_renew_due():
    from .calendars.sync import calendars_renew_due

    return calendars_renew_due()


# A calendar a notification marked due is synced until a sync has started since: a lost message is re-sent.
outbox.register(Calendar, calendar_sync_task, where=Q(sync_due=True))


def _copy_give_up(task, exc, recording_id):
    recordings.recording_copy_give_up(recording_id=recording_id, error=exc)


# No fixed provider: a download error retries on the meeting provider's policy, an upload error on S3's.
@shared_task(bind=True, base=ProviderTask, give_up=_copy_give_up, name="scheduling.recording_copy")
def recording_copy(self, recording_id):
    return recordings.recording_copy(recording_id=recording_id)


outbox.register(MeetingRecording, recording_copy, due_states=(MeetingRecording.Copy.QUEUED,))


# --- Google Meet lifecycle events (scheduling.meet_events) ---------------------------------------------


@shared_task(bind=True, base=ProviderTask, provider="google_meet", name="scheduling.meet_subscribe", ignore_result=True)
def meet_subscribe(self, meeting_id):
    from . import meet_events

    return meet_events.meet_subscription_ensure(meeting_id=meeting_id)


@shared_task(bind=True, base=ProviderTask, provider="google_meet", name="scheduling.meet_subscription_renew")
def meet_subscription_renew_task(self, subscription_id):
    from . import meet_events

    return meet_events.meet_subscription_renew(subscription_id=subscription_id)


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
