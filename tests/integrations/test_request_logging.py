"""Every log line written while serving a request carries that request's id, Django's own included."""

import logging

import pytest
import responses

from integrations.logging import RequestIdFilter
from tests.payments.factories import InvoiceFactory

pytestmark = pytest.mark.django_db


class _Capture(logging.Handler):
    """A handler set up like the console one (the request-id filter on the handler), keeping records."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def captured():
    handler = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(old_level)


def _lines_for(records, logger):
    return [r for r in records if r.name == logger]


def test_a_404_is_logged_by_django_and_the_access_log_with_its_request_id(client, captured):
    response = client.get("/api/v1/no-such-thing/", HTTP_X_REQUEST_ID="req-404-abc")
    assert response.status_code == 404 and response["X-Request-ID"] == "req-404-abc"
    [django_line] = _lines_for(captured, "django.request")
    [access_line] = _lines_for(captured, "hub.access")
    assert django_line.request_id == "req-404-abc" and access_line.request_id == "req-404-abc"
    assert access_line.status == 404 and "/api/v1/no-such-thing/" in access_line.getMessage()


@pytest.mark.urls("tests.testapp.urls")
def test_a_500_is_logged_with_its_request_id_and_answers_json(client, captured):
    client.raise_request_exception = False
    response = client.get("/api/v1/test-boom/", HTTP_X_REQUEST_ID="req-500-abc")
    assert response.status_code == 500 and response.json()["error"] == "server_error"
    assert response["X-Request-ID"] == "req-500-abc"
    [django_line] = _lines_for(captured, "django.request")
    assert django_line.request_id == "req-500-abc" and django_line.exc_info is not None
    assert _lines_for(captured, "hub.access")[0].request_id == "req-500-abc"


def test_a_502_for_a_provider_outage_is_logged_with_its_request_id(client_for, captured, settings):
    from tests.payments import stripe_fakes as fakes

    settings.STRIPE_SECRET_KEY = fakes.SECRET_KEY
    settings.STRIPE_API_BASE = ""
    invoice = InvoiceFactory()
    user = invoice.owner
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        http.post(f"{fakes.API}/v1/customers", json={"id": "cus_1", "object": "customer"})
        http.post(f"{fakes.API}/v1/payment_intents", json={"error": {"type": "api_error"}}, status=500)
        response = client_for(user).post(
            f"/api/v1/payments/invoices/{invoice.pk}/pay/", {}, format="json", HTTP_X_REQUEST_ID="req-502-abc"
        )
    assert response.status_code == 502
    lines = _lines_for(captured, "django.request") + _lines_for(captured, "hub.access")
    assert lines and {r.request_id for r in lines} == {"req-502-abc"}
    assert any(r.levelno >= logging.ERROR for r in _lines_for(captured, "django.request"))
