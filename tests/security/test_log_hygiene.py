"""Logs carry no outbound request URLs: a provider's query string may hold a credential."""

import logging

import httpx
import httpx2
import responses
import stripe


def test_an_outbound_request_url_is_not_logged(caplog):
    url = "https://api.example.test/v1/models?key=sk-secret-in-query"
    with caplog.at_level(logging.DEBUG):
        for lib in (httpx, httpx2):  # the SDKs' clients (the OpenAI and Anthropic SDKs use httpx2)
            with lib.Client(transport=lib.MockTransport(lambda request, lib=lib: lib.Response(200))) as client:
                assert client.get(url).status_code == 200
    assert "sk-secret-in-query" not in caplog.text


def test_a_stripe_request_is_not_logged(caplog):
    url = "https://api.stripe.com/v1/payment_intents/pi_log_1"
    with responses.RequestsMock() as http, caplog.at_level(logging.INFO):
        http.get(url, json={"id": "pi_log_1", "object": "payment_intent"})
        client = stripe.StripeClient("sk_test_log", max_network_retries=0, http_client=stripe.RequestsClient())
        assert client.v1.payment_intents.retrieve("pi_log_1").id == "pi_log_1"
    assert "pi_log_1" not in caplog.text  # the call's ProviderCall row holds it
