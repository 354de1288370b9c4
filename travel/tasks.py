"""Thin Celery tasks over travel.services; ids only, enqueued on commit."""

from celery import shared_task

from integrations.task_base import ProviderTask

from . import services


def _check_give_up(task, exc, watch_id, *args, **kwargs):
    services.watch_check_failed(watch_id=watch_id, error=exc)


@shared_task(bind=True, base=ProviderTask, provider="duffel", give_up=_check_give_up, name="travel.watch_check")
def watch_check(self, watch_id):
    return services.watch_check(watch_id=watch_id)


def _notify_give_up(task, exc, point_id, *args, **kwargs):
    services.watch_notify_failed(point_id=point_id, error=exc)


@shared_task(bind=True, base=ProviderTask, provider="email", give_up=_notify_give_up, name="travel.watch_notify")
def watch_notify(self, point_id):
    return services.watch_notify(point_id=point_id)


@shared_task(name="travel.watch_check_due", ignore_result=True)
def watch_check_due():
    """Beat, every minute: queue the watches that are due, within the search budget."""
    return services.watch_check_due()
