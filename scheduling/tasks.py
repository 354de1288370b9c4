"""Calendar tasks: thin wrappers over scheduling.calendars.sync, ids only."""

from celery import shared_task
from django.db.models import Q

from integrations import outbox
from integrations.task_base import ProviderTask

from .models import Calendar


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
