"""#17.7 (issue table row 8): signed Stripe events with a NUL byte or an absurd `created` are not 500s."""

import pytest

from integrations.models import WebhookEvent

from . import stripe_fakes as fakes

pytestmark = pytest.mark.django_db

URL = "/webhooks/stripe/"


def deliver(client, evt):
    body = fakes.body_of(evt)
    return client.post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=fakes.sign(body))


def test_a_nul_byte_in_a_signed_event_is_stripped_before_storage(client):
    evt = fakes.event("customer.updated", {"id": "cus_1", "object": "customer", "name": "Ann\x00e"})
    resp = deliver(client, evt)
    assert resp.status_code == 200, resp.content
    assert WebhookEvent.objects.get().payload["data"]["object"]["name"] == "Anne"


@pytest.mark.parametrize("created", [10**18, -(10**18), 2**63])
def test_an_out_of_range_created_timestamp_is_a_json_400_and_nothing_is_stored(client, created):
    evt = fakes.event("customer.updated", {"id": "cus_1", "object": "customer"})
    evt["created"] = created
    resp = deliver(client, evt)
    assert resp.status_code == 400
    assert resp.json()["error"] == "malformed_event"
    assert not WebhookEvent.objects.exists()


@pytest.mark.postgres
def test_a_webhook_while_postgresql_is_down_is_a_503_so_stripe_retries(transactional_db, monkeypatch):
    from django.db import connection
    from django.test import Client

    # As in production: the exception becomes the handler's response instead of failing the test.
    client = Client(raise_request_exception=False)
    evt = fakes.event("customer.updated", {"id": "cus_1", "object": "customer"})
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", "18897")  # nothing listens there
    try:
        resp = deliver(client, evt)
    finally:
        connection.close()
    assert resp.status_code == 503
    assert resp.json()["error"] == "service_unavailable"
    assert resp["Retry-After"]


@pytest.mark.parametrize("field, value", [("id", ["evt_1"]), ("id", 12345), ("type", {"a": 1}), ("type", 7)])
def test_a_signed_event_whose_id_or_type_is_not_a_string_is_a_json_400_and_nothing_is_stored(client, field, value):
    evt = fakes.event("customer.updated", {"id": "cus_1", "object": "customer"})
    evt[field] = value
    resp = deliver(client, evt)
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"] == "malformed_event"
    assert not WebhookEvent.objects.exists()
