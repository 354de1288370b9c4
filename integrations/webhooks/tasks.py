from celery import shared_task

from .processing import webhook_event_process, webhook_requeue_stale


@shared_task(
    name="integrations.webhook_process",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the budget is WEBHOOK_MAX_ATTEMPTS, counted on the row
    ignore_result=True,
)
def webhook_process(self, event_id):
    result = webhook_event_process(event_id=event_id)
    # Called directly or eagerly (tests, a shell) there is no broker to retry
    # through; the requeue beat task picks up the overdue attempt instead.
    if result.retry_in is not None and not (self.request.called_directly or self.request.is_eager):
        raise self.retry(countdown=result.retry_in)


@shared_task(name="integrations.webhook_requeue_stale", ignore_result=True)
def webhook_requeue_stale_task():
    return webhook_requeue_stale()
