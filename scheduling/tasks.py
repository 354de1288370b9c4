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


# --- Teams lifecycle (scheduling.teams_lifecycle): Graph subscriptions per meeting, artifacts, attendance -------


@shared_task(bind=True, base=ProviderTask, provider="teams", name="scheduling.teams_subscribe", ignore_result=True)
def teams_subscribe_task(self, meeting_id):
    from .teams_lifecycle import meeting_subscribe

    meeting_subscribe(meeting_id=meeting_id)


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
