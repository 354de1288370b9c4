from celery import shared_task

from ..task_base import ProviderTask


def _give_up(task, exc, delivery_id):
    from .notify import delivery_fail

    delivery_fail(delivery_id=delivery_id, error=exc)


@shared_task(bind=True, base=ProviderTask, name="integrations.alert_deliver", give_up=_give_up, ignore_result=True)
def alert_deliver(self, delivery_id):
    """Send one alert notice (AlertDelivery); retryable failures are retried with backoff."""
    from .notify import delivery_send

    delivery_send(delivery_id=delivery_id)


@shared_task(name="integrations.alerts_evaluate", ignore_result=True)
def alerts_evaluate():
    """Beat, every ALERT_EVALUATE_INTERVAL_SECONDS: thresholds, reminders, lost deliveries."""
    from .notify import deliveries_requeue, reminders_send
    from .thresholds import thresholds_evaluate

    thresholds_evaluate()
    reminders_send()
    deliveries_requeue()
