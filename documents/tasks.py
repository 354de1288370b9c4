"""Thin Celery tasks over documents.services; ids only, safe to run twice."""

from celery import shared_task

from integrations.task_base import ProviderTask

from . import services


def scan_give_up(task, exc, version_id):
    services.version_scan_failed(version_id=version_id, error=exc)


@shared_task(bind=True, base=ProviderTask, provider="s3", give_up=scan_give_up, name="documents.version_scan")
def version_scan(self, version_id):
    return services.version_scan(version_id=version_id)


# One that gives up raises the task_failed alert; the sweep enqueues it again later.
@shared_task(bind=True, base=ProviderTask, provider="s3", name="documents.version_quarantine")
def version_quarantine(self, version_id):
    return services.version_quarantine(version_id=version_id)


# A purge that gives up leaves the document in `deleting`; the sweep re-enqueues it.
@shared_task(bind=True, base=ProviderTask, provider="s3", name="documents.document_purge")
def document_purge(self, document_id):
    return services.document_purge(document_id=document_id)


@shared_task(bind=True, base=ProviderTask, provider="s3", name="documents.sweep_orphans")
def sweep_orphans(self):
    result = services.orphans_sweep()
    return {
        "requeued": len(result["requeued"]),
        "requarantined": len(result["requarantined"]),
        "removed": len(result["removed"]),
    }
