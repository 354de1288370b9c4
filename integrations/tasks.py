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


@shared_task(name="integrations.outbox_sweep", ignore_result=True)
def outbox_sweep():
    """Beat, every OUTBOX_SWEEP_INTERVAL_SECONDS: send again the task of every row whose task is overdue."""
    from .outbox import outbox_sweep as sweep

    result = sweep()
    return {"sent": result["sent"], "cleared": result["cleared"], "stuck": result["stuck"]}


@shared_task(name="integrations.call_log_handoff_sweep", ignore_result=True)
def call_log_handoff_sweep():
    """Beat, every CALL_LOG_HANDOFF_SWEEP_SECONDS: call-log rows of stopped workers' drainers back to the
    queue, and what waits there written (integrations.gateway.handoff)."""
    from .gateway.handoff import sweep_and_drain

    return sweep_and_drain()


# The webhook inbox's tasks live beside it; importing them here registers them with Celery.
from .alerting.tasks import alert_deliver, alerts_evaluate  # noqa: E402,F401
from .oauth.tasks import oauth_connection_refresh, oauth_refresh_due, oauth_states_purge  # noqa: E402,F401
from .webhooks.tasks import webhook_drain_task, webhook_process, webhook_requeue_stale_task  # noqa: E402,F401


@shared_task(name="integrations.audit_archive", ignore_result=True)
def audit_archive():
    """Nightly: yesterday's (and any missed day's) audit events to S3, verified; then the verified prune."""
    from .audit.archive import audit_archive_run

    return audit_archive_run()


@shared_task(name="integrations.retention_enforce", ignore_result=True)
def retention_enforce():
    """Nightly: every retention policy, in small batches (integrations.retention)."""
    from .retention import retention_enforce_all

    return retention_enforce_all()
