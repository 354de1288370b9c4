from celery import shared_task

from integrations.task_base import ProviderTask

from . import erasure, exports


def export_give_up(task, exc, export_id):
    exports.export_failed(export_id=export_id, error=exc)


@shared_task(bind=True, base=ProviderTask, name="privacy.export_build", give_up=export_give_up)
def export_build(self, export_id):
    return exports.export_build(export_id=export_id)


@shared_task(bind=True, name="privacy.erasure_run", acks_late=True, reject_on_worker_lost=True)
def erasure_run(self, erasure_id):
    return erasure.erasure_run(erasure_id=erasure_id)


@shared_task(name="privacy.sweep")
def sweep():
    """Beat: expired exports deleted, lost export builds queued again, due erasures run, old digests forgotten."""
    return {
        "exports_purged": exports.exports_purge(),
        "exports_requeued": exports.exports_requeue_stale(),
        "erasures_queued": erasure.erasures_enqueue_due(),
        "erased_references_purged": erasure.erased_references_purge(),
    }
