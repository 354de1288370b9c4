"""Twilio test kit: settings, the SDK's HTTP intercepted with `responses`, eager tasks,
and callbacks signed with the SDK's own RequestValidator."""

from urllib.parse import urlencode

import pytest
import responses
from twilio.request_validator import RequestValidator

from config.celery import app as celery_app

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "twilio_auth_token_for_tests_0001"
HUB_NUMBER = "+14155550100"
# A number several users may text from the shared hub number (inbound attribution tests).
REPLY_FROM = "+15005550006"
APP_URL = "https://hub.example.com"
API = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"
MESSAGES_URL = f"{API}/Messages.json"
CALLS_URL = f"{API}/Calls.json"


@pytest.fixture
def twilio(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_PHONE_NUMBER = HUB_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_API_BASE = ""
    settings.APP_URL = APP_URL
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "twilio": {"base": 0.01, "cap": 0.01, "max_retries": 3}}
    return settings


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def eager():
    """Tasks run inline when enqueued (after commit), as a worker would run them."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def message_json(sid="SM" + "a" * 32, status="queued", segments="1", price=None, to="+15005550006", **extra):
    return {
        "sid": sid,
        "account_sid": ACCOUNT_SID,
        "status": status,
        "num_segments": segments,
        "price": price,
        "price_unit": "USD",
        "to": to,
        "from": HUB_NUMBER,
        "body": "hi",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        **extra,
    }


def call_json(sid="CA" + "b" * 32, status="queued", duration=None, price=None, **extra):
    return {
        "sid": sid,
        "account_sid": ACCOUNT_SID,
        "status": status,
        "duration": duration,
        "price": price,
        "price_unit": "USD",
        "to": "+15005550006",
        "from": HUB_NUMBER,
        **extra,
    }


def sign(path, params, token=AUTH_TOKEN, base=APP_URL):
    return RequestValidator(token).compute_signature(base + path, params)


def twilio_post(client, path, params, *, signature="sign", token=AUTH_TOKEN, base=APP_URL, **headers):
    """POST a form-encoded callback as Twilio does; signature="sign" signs it correctly, None omits it."""
    if signature == "sign":
        signature = sign(path, params, token=token, base=base)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, urlencode(params), content_type="application/x-www-form-urlencoded", headers=headers)


@pytest.fixture
def reply(client, django_capture_on_commit_callbacks, eager, twilio):
    """Twilio delivers an inbound SMS to the shared hub number, through the real webhook and inbox."""
    from messaging.models import SmsMessage

    def deliver(body, sid="SMreply1", sender=REPLY_FROM):
        params = {"MessageSid": sid, "SmsSid": sid, "From": sender, "To": HUB_NUMBER, "Body": body, "NumSegments": "1"}
        with django_capture_on_commit_callbacks(execute=True):
            response = twilio_post(client, "/webhooks/twilio/sms/", params)
        assert response.status_code == 200, response.content
        return SmsMessage.objects.get(external_id=sid)

    return deliver
