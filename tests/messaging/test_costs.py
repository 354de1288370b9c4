import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.models import ProviderCall
from messaging.models import CallLog, SmsMessage
from messaging.services import costs_unbooked_sweep

from .conftest import API, call_json, message_json
from .factories import CallFactory, SmsFactory

pytestmark = pytest.mark.django_db


def _age(model, pk, hours=2):
    model.objects.filter(pk=pk).update(updated_at=timezone.now() - dt.timedelta(hours=hours))


def test_a_message_whose_status_callback_never_came_gets_its_billed_price_booked_once(
    twilio, http, eager, django_capture_on_commit_callbacks
):
    sms = SmsFactory(status="sent", external_id="SMlost1")
    fresh = SmsFactory(status="sent", external_id="SMfresh")  # recent: its callback may still come
    _age(SmsMessage, sms.pk)
    http.get(f"{API}/Messages/SMlost1.json", json=message_json(sid="SMlost1", status="delivered", price="-0.00790"))
    with django_capture_on_commit_callbacks(execute=True):
        assert costs_unbooked_sweep(older_than_seconds=3600) == {"sms": 1, "calls": 0}
    sms.refresh_from_db()
    assert (sms.price_usd, sms.price_final, sms.cost_recorded) == (Decimal("0.00790"), True, True)
    assert ProviderCall.objects.get(operation="sms.price").cost_usd == Decimal("0.0079")
    with django_capture_on_commit_callbacks(execute=True):
        assert costs_unbooked_sweep(older_than_seconds=3600) == {"sms": 0, "calls": 0}
    fresh.refresh_from_db()
    assert not fresh.cost_recorded


def test_a_finished_call_without_a_callback_is_priced_and_a_live_one_is_left(
    twilio, http, eager, django_capture_on_commit_callbacks
):
    done = CallFactory(status="completed", external_id="CAlost1")
    live = CallFactory(status="in_progress", external_id="CAlive1")
    _age(CallLog, done.pk)
    _age(CallLog, live.pk)
    http.get(
        f"{API}/Calls/CAlost1.json", json=call_json(sid="CAlost1", status="completed", duration="61", price="-0.02800")
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert costs_unbooked_sweep(older_than_seconds=3600) == {"sms": 0, "calls": 1}
    done.refresh_from_db()
    assert done.cost_recorded and done.price_usd == Decimal("0.028")
