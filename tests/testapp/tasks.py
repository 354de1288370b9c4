from celery import shared_task
from django.db import transaction

from integrations.errors import RateLimited
from integrations.task_base import ProviderTask
from tests.integrations import acme

from .models import Shipment


def _move(shipment_id, frm, to, **fields):
    """Apply a transition only from the expected state; False if another run got there first."""
    allowed = to in Shipment.TRANSITIONS[frm]
    return allowed and Shipment.objects.filter(pk=shipment_id, state=frm).update(state=to, **fields) == 1


def shipment_give_up(task, exc, shipment_id):
    Shipment.objects.filter(pk=shipment_id, state__in=["queued", "sending"]).update(state="failed", error=str(exc))


@shared_task(bind=True, base=ProviderTask, provider="acme", give_up=shipment_give_up, name="tests.shipment_send")
def shipment_send(self, shipment_id):
    shipment = Shipment.objects.filter(pk=shipment_id).first()
    if shipment is None or shipment.state not in ("queued", "sending"):
        return "skipped"
    if shipment.state == "sending" and self.request.retries == 0:
        # A redelivery after the worker died mid-call: the provider may have
        # sent it. Never send twice; leave it for reconciliation.
        return "in_doubt"
    with transaction.atomic():
        if shipment.state == "queued" and not _move(shipment_id, "queued", "sending"):
            return "skipped"
    try:
        result = acme.send(
            shipment.body, scope=shipment.body.get("from"), related=("testapp.shipment", str(shipment_id))
        )
    except RateLimited:
        Shipment.objects.filter(pk=shipment_id, state="sending").update(state="queued")  # nothing was sent
        raise
    _move(shipment_id, "sending", "sent", external_id=result["id"])
    return "sent"
