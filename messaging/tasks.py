"""Thin Celery tasks over messaging.services; ids only, enqueued on commit."""

from celery import shared_task
from django.conf import settings
from django.db.models import Q

from integrations import outbox
from integrations.task_base import ProviderTask, retry_policy

from . import services
from .models import CallLog, SmsMessage

# Twilio prices a message or call some seconds to minutes after it ends.
PRICE_POLL_SECONDS = 60
PRICE_POLL_TRIES = 10


def _sms_give_up(task, exc, sms_id, *args, **kwargs):
    services.sms_give_up(sms_id=sms_id, error=exc)


def _call_give_up(task, exc, call_id, *args, **kwargs):
    services.call_give_up(call_id=call_id, error=exc)


def _create_once(task, run):
    try:
        return run()
    except services.SendInFlight as exc:
        # Redelivered while the last create call may still be running: look it up once that call is over.
        raise task.retry(countdown=exc.wait, max_retries=retry_policy("twilio")["max_retries"]) from exc


def _price_poll(task, record):
    """Ask until Twilio has priced it; the last try books the price table's estimate instead."""
    outcome = record(final_try=task.request.retries >= PRICE_POLL_TRIES)
    if outcome == "pending" and task.request.retries < PRICE_POLL_TRIES:
        raise task.retry(countdown=PRICE_POLL_SECONDS, max_retries=PRICE_POLL_TRIES)
    return outcome


@shared_task(bind=True, base=ProviderTask, provider="twilio", give_up=_sms_give_up, name="messaging.sms_send")
def sms_send(self, sms_id):
    return _create_once(self, lambda: services.sms_send(sms_id=sms_id))


# Until Twilio has it (a SID) or the row fails: a lost send is sent again, and create_once never sends twice.
outbox.register(
    SmsMessage,
    sms_send,
    due_states=("queued", "sending"),
    where=Q(direction=SmsMessage.Direction.OUTBOUND, external_id__isnull=True),
)


@shared_task(bind=True, base=ProviderTask, provider="twilio", name="messaging.sms_price_fetch")
def sms_price_fetch(self, sms_id):
    return _price_poll(self, lambda final_try: services.sms_price_record(sms_id=sms_id, final_try=final_try))


@shared_task(bind=True, base=ProviderTask, provider="twilio", name="messaging.sms_error_describe", ignore_result=True)
def sms_error_describe(self, sms_id):
    return services.sms_error_describe(sms_id=sms_id)


@shared_task(bind=True, base=ProviderTask, provider="twilio", give_up=_call_give_up, name="messaging.call_place")
def call_place(self, call_id):
    return _create_once(self, lambda: services.call_place_run(call_id=call_id))


outbox.register(
    CallLog,
    call_place,
    due_states=("queued", "dialing"),
    where=Q(direction=CallLog.Direction.OUTBOUND, external_id__isnull=True),
)


@shared_task(bind=True, base=ProviderTask, provider="twilio", name="messaging.call_price_fetch")
def call_price_fetch(self, call_id):
    return _price_poll(self, lambda final_try: services.call_price_record(call_id=call_id, final_try=final_try))


@shared_task(name="messaging.costs_unbooked_sweep", ignore_result=True)
def costs_unbooked_sweep():
    """Beat: book the price of messages and calls whose status callback never came."""
    return services.costs_unbooked_sweep(older_than_seconds=settings.TWILIO_COST_SWEEP_AFTER_SECONDS)
