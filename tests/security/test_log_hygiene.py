"""Logs carry no outbound request URLs: a provider's query string may hold a credential."""

import logging

import httpx
import httpx2


def test_an_outbound_request_url_is_not_logged(caplog):
    url = "https://api.example.test/v1/models?key=sk-secret-in-query"
    with caplog.at_level(logging.DEBUG):
        for lib in (httpx, httpx2):  # the SDKs' clients (the OpenAI and Anthropic SDKs use httpx2)
            with lib.Client(transport=lib.MockTransport(lambda request, lib=lib: lib.Response(200))) as client:
                assert client.get(url).status_code == 200
    assert "sk-secret-in-query" not in caplog.text
