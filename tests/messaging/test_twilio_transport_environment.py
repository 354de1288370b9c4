"""Twilio's transport reads the environment once (messaging.providers.twilio_rest.HubTwilioHttpClient): a proxy the
environment names for a Twilio host still carries every request to it, NO_PROXY still exempts it, the CA bundle the
environment names is still the one TLS trusts, and a request no longer scans the environment itself (issue 11)."""

import pytest

from messaging.models import SmsMessage
from messaging.providers import twilio_rest
from messaging.tasks import sms_send

from .conftest import MESSAGES_URL, message_json
from .factories import SmsFactory

pytestmark = pytest.mark.django_db

PROXY = "http://proxy.internal:3128"


@pytest.fixture
def fresh_client():
    """The client is kept per thread: build the next one under the environment a test sets."""
    twilio_rest._local.client = None
    yield
    twilio_rest._local.client = None


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def _send(http):
    http.post(MESSAGES_URL, json=message_json(sid=f"SM{SmsMessage.objects.count() + 1}"), status=201)
    sms = SmsFactory()
    sms_send.apply(args=[sms.pk])
    sms.refresh_from_db()
    assert sms.status == "sending"
    return http.calls[-1].request.req_kwargs


def test_a_proxy_named_by_the_environment_carries_every_twilio_request(
    twilio, http, fresh_client, clean_environment, monkeypatch
):
    monkeypatch.setenv("HTTPS_PROXY", PROXY)

    assert _send(http)["proxies"]["https"] == PROXY
    assert _send(http)["proxies"]["https"] == PROXY  # the host's proxies, resolved once, on the next request too


def test_no_proxy_still_exempts_twilios_host(twilio, http, fresh_client, clean_environment, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "api.twilio.com")

    assert "https" not in (_send(http).get("proxies") or {})


def test_the_ca_bundle_the_environment_names_is_trusted(twilio, http, fresh_client, clean_environment, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate-ca.pem")

    assert _send(http)["verify"] == "/etc/ssl/corporate-ca.pem"


def test_a_request_does_not_read_the_environment(twilio, http, fresh_client, clean_environment, environ_reads):
    _send(http)  # the client is built, and Twilio's host asked once, under the environment of the moment
    reads = environ_reads()
    _send(http)

    assert not [k for k in reads if "proxy" in k.lower() or "ca_bundle" in k.lower()]
