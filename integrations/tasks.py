from celery import shared_task

from .services import heartbeat_stamp


@shared_task(name="integrations.ping", ignore_result=True)
def ping():
    """Beat sends this every HEARTBEAT_INTERVAL_SECONDS; a worker that runs it proves it is alive."""
    heartbeat_stamp(hostname=ping.request.hostname or "unknown")


@shared_task(name="integrations.idempotency_purge", ignore_result=True)
def idempotency_purge():
    """Hourly: forget Idempotency-Key records past their 24 h."""
    from .api.idempotency import idempotency_purge as purge

    return purge()


# The webhook inbox's tasks live beside it; importing them here registers them with Celery.
from .oauth.tasks import oauth_connection_refresh, oauth_refresh_due, oauth_states_purge  # noqa: E402,F401
from .webhooks.tasks import webhook_drain_task, webhook_process, webhook_requeue_stale_task  # noqa: E402,F401
