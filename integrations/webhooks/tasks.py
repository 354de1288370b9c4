from celery import shared_task

from .dispatch import drain_started, request_drain
from .processing import webhook_drain, webhook_event_process, webhook_follow_ups_send, webhook_requeue_stale


@shared_task(
    name="integrations.webhook_drain",
    bind=True,
    acks_late=True,  # a worker that dies mid-batch leaves the message; its batch rolled back, so nothing is lost
    reject_on_worker_lost=True,
    ignore_result=True,
)
def webhook_drain_task(self, provider):
    """Process ready events of one provider in batches until none is left (one batch per run, then re-queued)."""
    inline = self.request.called_directly or self.request.is_eager
    drain_started(provider)  # before claiming: an event stored from here on queues the next drain
    # A full batch queues the next drain at once, so another worker takes the next batch beside this one.
    # Inline (tests, a shell) that drain would run inside this batch's transaction: queue it after instead.
    result = webhook_drain(provider=provider, on_full_batch=None if inline else lambda: request_drain(provider))
    if result.more:
        request_drain(provider)
    if result.retry_in is not None and not inline:
        # The earliest retry of this batch's failures (or a look at events left for another drainer), also when
        # more is ready now: the drains that follow know nothing of this batch's failures. Inline, the beat
        # sweeper picks it up instead.
        self.apply_async((provider,), countdown=result.retry_in)
    return result.claimed


@shared_task(
    name="integrations.webhook_process",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def webhook_process(event_id):
    """One event at once: kept for messages queued before drains existed (a rolling deploy) and for shells."""
    return webhook_event_process(event_id=event_id).status


@shared_task(name="integrations.webhook_requeue_stale", ignore_result=True)
def webhook_requeue_stale_task():
    """Beat: nothing received is lost. Events left unprocessed are drained again, and the follow-up tasks
    of processed events that never reached the broker are sent again."""
    follow_ups = webhook_follow_ups_send()
    return {"requeued": webhook_requeue_stale(), "follow_ups": follow_ups}
