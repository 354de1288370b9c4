"""Thin Celery tasks over documents.services; ids only, safe to run twice."""

from celery import shared_task
from django.db.models import Q

from integrations import outbox
from integrations.task_base import ProviderTask

from . import services
from .models import Document, DocumentVersion


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


Scan = DocumentVersion.ScanStatus
outbox.register(DocumentVersion, version_scan, due_states=(Scan.PENDING, Scan.SCANNING))
# Moving or deleting stored objects is always safe to repeat: one that gave up is tried again later too.
outbox.register(
    DocumentVersion,
    version_quarantine,
    due_states=(Scan.INFECTED,),
    where=Q(quarantined_at__isnull=True, document__state=Document.State.ACTIVE),
    resweep_after_give_up=True,
)
outbox.register(Document, document_purge, where=Q(state=Document.State.DELETING), resweep_after_give_up=True)


@shared_task(bind=True, base=ProviderTask, provider="s3", name="documents.sweep_orphans")
def sweep_orphans(self):
    result = services.orphans_sweep()
    return {
        "requeued": len(result["requeued"]),
        "requarantined": len(result["requarantined"]),
        "removed": len(result["removed"]),
    }
