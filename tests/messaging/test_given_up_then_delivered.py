"""An SMS or call given up in doubt that Twilio did handle follows its status callbacks."""

import pytest
import requests

from integrations.models import WebhookEvent
from messaging.tasks import sms_send

from .conftest import MESSAGES_URL, twilio_post
from .factories import SmsFactory
from .test_send_lookup import page

pytestmark = pytest.mark.django_db

STATUS = "/webhooks/twilio/sms-status/"


def test_a_message_given_up_in_doubt_that_twilio_did_deliver_ends_delivered_not_failed(
    twilio, http, client, eager, django_capture_on_commit_callbacks
):
    """Every create call timed out and no lookup found it yet, so the task gave up and the row failed; but Twilio
    had accepted the last one and its status callback (naming our row in the URL) says delivered. The callback
    stamped the SID on the failed row and was then dropped as "not a forward move": the user sees failed for a
    message the recipient got, and sending it again texts them twice."""
    http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    http.get(MESSAGES_URL, json=page())  # Twilio has not listed it yet when each retry looks
    sms = SmsFactory()
    sms_send.apply(args=[sms.pk])  # 1 try + 3 retries, every create timed out: give_up
    sms.refresh_from_db()
    assert sms.status == "failed" and sms.external_id is None

    params = {
        "MessageSid": "SMlate",
        "SmsSid": "SMlate",
        "MessageStatus": "delivered",
        "AccountSid": "AC1",
        "From": sms.from_number,
        "To": sms.to_number,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = twilio_post(client, f"{STATUS}?sms={sms.pk}", params)
    assert response.status_code == 200
    event = WebhookEvent.objects.get(provider="twilio")
    assert event.status in ("processed", "ignored"), (event.status, event.last_error)
    sms.refresh_from_db()
    assert sms.external_id == "SMlate", (event.status, event.last_error)
    assert sms.status == "delivered", (sms.status, sms.error_code, sms.error_message)


def test_a_call_given_up_in_doubt_that_twilio_did_place_follows_its_status_callbacks(
    twilio, http, client, eager, django_capture_on_commit_callbacks
):
    """The same for calls: the row failed after every create timed out, Twilio had placed the last one and it was
    answered; its callbacks were dropped ("failed -> completed is not a forward move") and the SID never stored."""
    from messaging.models import CallLog
    from messaging.tasks import call_place

    from .conftest import CALLS_URL
    from .factories import CallFactory
    from .test_call_lookup import page as calls_page

    http.post(CALLS_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    http.get(CALLS_URL, json=calls_page())
    call = CallFactory()
    call_place.apply(args=[call.pk])
    call.refresh_from_db()
    assert call.status == "failed" and call.external_id is None

    params = {
        "CallSid": "CAlate",
        "CallStatus": "completed",
        "CallDuration": "42",
        "AccountSid": "AC1",
        "From": call.from_number,
        "To": call.to_number,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = twilio_post(client, f"/webhooks/twilio/call-status/?call={call.pk}", params)
    assert response.status_code == 200
    event = WebhookEvent.objects.get(provider="twilio")
    call = CallLog.objects.get(pk=call.pk)
    assert (call.external_id, call.status) == ("CAlate", "completed"), (event.status, event.last_error)
    assert call.duration_seconds == 42
