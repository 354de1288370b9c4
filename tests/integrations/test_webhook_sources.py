"""Optional source-network allowlists in front of the webhook signature check (off by default)."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from integrations.models import WebhookEvent
from integrations.webhooks.registry import VERIFIERS
from integrations.webhooks.sources import WEBHOOK_PUBLISHED_SOURCES, source_address, source_allowed
from tests.integrations import webhook_provider as hubtest

URL = "/webhooks/hubtest/"
STRIPE_IP = WEBHOOK_PUBLISHED_SOURCES["stripe"][0]


@pytest.fixture
def hubtest_provider(monkeypatch, settings):
    settings.HUBTEST_WEBHOOK_SECRET = hubtest.SECRET
    monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, hubtest.verify)


def post(client, body, signature, **extra):
    return client.post(URL, body, content_type="application/json", HTTP_X_HUBTEST_SIGNATURE=signature, **extra)


@pytest.mark.django_db
@pytest.mark.usefixtures("hubtest_provider")
class TestInbox:
    def test_without_an_allowlist_any_source_with_a_good_signature_is_accepted(self, client):
        body = hubtest.event_body("evt_1")
        assert post(client, body, hubtest.sign(body), REMOTE_ADDR="198.51.100.7").status_code == 200

    def test_a_delivery_from_outside_the_list_is_403_before_the_signature_is_checked(self, client, settings):
        settings.WEBHOOK_SOURCE_NETWORKS = {"hubtest": ["203.0.113.0/24"]}
        body = hubtest.event_body("evt_1")
        resp = post(client, body, "t=1,v1=not-even-checked", REMOTE_ADDR="198.51.100.7")
        assert resp.status_code == 403
        assert resp.json()["error"] == "source_not_allowed"
        assert not WebhookEvent.objects.exists()

    def test_a_delivery_from_inside_the_list_goes_on_to_the_signature_check(self, client, settings):
        settings.WEBHOOK_SOURCE_NETWORKS = {"hubtest": ["203.0.113.0/24"]}
        body = hubtest.event_body("evt_1")
        assert post(client, body, hubtest.sign(body), REMOTE_ADDR="203.0.113.9").status_code == 200
        assert post(client, body, "t=1,v1=bad", REMOTE_ADDR="203.0.113.9").json()["error"] == "stale_signature"

    def test_a_forwarded_for_header_is_believed_only_from_a_trusted_proxy(self, client, settings):
        settings.WEBHOOK_SOURCE_NETWORKS = {"hubtest": ["203.0.113.0/24"]}
        settings.WEBHOOK_TRUSTED_PROXIES = ["10.0.0.0/8"]
        body = hubtest.event_body("evt_1")
        # Straight from the internet, claiming to be inside the list: refused.
        spoofed = post(client, body, hubtest.sign(body), REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.9")
        assert spoofed.status_code == 403
        # Through our proxy, which appended the real sender.
        proxied = post(client, body, hubtest.sign(body), REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="203.0.113.9")
        assert proxied.status_code == 200


class TestClientAddress:
    def request(self, remote, forwarded=None):
        extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
        return RequestFactory().post("/webhooks/x/", REMOTE_ADDR=remote, **extra)

    def test_the_rightmost_address_that_is_not_our_proxy_is_the_sender(self, settings):
        settings.WEBHOOK_TRUSTED_PROXIES = ["10.0.0.0/8", "192.168.0.0/16"]
        request = self.request("10.0.0.5", "203.0.113.9, 198.51.100.7, 192.168.1.1")
        assert str(source_address(request)) == "198.51.100.7"  # what the client wrote further left is not believed

    def test_a_request_not_from_a_trusted_proxy_is_its_remote_address(self, settings):
        settings.WEBHOOK_TRUSTED_PROXIES = ["10.0.0.0/8"]
        assert str(source_address(self.request("198.51.100.7", "203.0.113.9"))) == "198.51.100.7"

    def test_without_trusted_proxies_the_login_throttle_rule_applies(self, settings):
        settings.WEBHOOK_TRUSTED_PROXIES = []
        settings.TRUSTED_PROXY_COUNT = 1
        assert str(source_address(self.request("10.0.0.5", "203.0.113.9, 198.51.100.7"))) == "198.51.100.7"
        settings.TRUSTED_PROXY_COUNT = 0
        assert str(source_address(self.request("10.0.0.5", "198.51.100.7"))) == "10.0.0.5"

    def test_stripes_published_list_is_the_default_when_its_check_is_on(self, settings):
        settings.WEBHOOK_SOURCE_CHECK = ["stripe"]
        assert source_allowed(self.request(STRIPE_IP), "stripe")[0] is True
        assert source_allowed(self.request("198.51.100.7"), "stripe")[0] is False
        assert source_allowed(self.request("198.51.100.7"), "twilio")[0] is True  # not checked

    def test_a_provider_without_a_published_list_needs_networks_of_its_own(self, settings):
        settings.WEBHOOK_SOURCE_CHECK = ["twilio"]
        with pytest.raises(ImproperlyConfigured, match="publishes no webhook source list"):
            source_allowed(self.request("198.51.100.7"), "twilio")
        settings.WEBHOOK_SOURCE_NETWORKS = {"twilio": ["198.51.100.0/24"]}
        assert source_allowed(self.request("198.51.100.7"), "twilio")[0] is True

    def test_a_malformed_network_is_refused_naming_the_setting(self, settings):
        settings.WEBHOOK_SOURCE_NETWORKS = {"stripe": ["not-a-network"]}
        with pytest.raises(ImproperlyConfigured, match="WEBHOOK_SOURCE_NETWORKS_JSON"):
            source_allowed(self.request("198.51.100.7"), "stripe")
