"""Stripe's transport reads the environment once, when its client is built (payments.providers.stripe._HttpClient):
a proxy the environment names for Stripe's host is still used on every request, NO_PROXY still exempts the host,
and a request no longer scans the environment itself (issue 11: that scan was ~16 % of a fee look-up's CPU)."""

import pytest

from payments.models import Payment
from payments.providers import stripe as stripe_api
from payments.tasks import payment_fee_record
from tests.payments import stripe_fakes as fakes
from tests.payments.factories import SucceededPaymentFactory

pytestmark = pytest.mark.django_db

PROXY = "http://proxy.internal:3128"


@pytest.fixture
def fresh_client():
    """Clients are cached per key and base URL: build the next one under the environment a test sets."""
    stripe_api._clients.clear()
    yield
    stripe_api._clients.clear()


def _look_up_fee(http):
    payment = SucceededPaymentFactory()
    http.get(
        f"{fakes.API}/v1/payment_intents/{payment.payment_intent_id}",
        json=fakes.settled_intent(payment.payment_intent_id),
    )
    payment_fee_record.apply(args=[payment.pk])
    assert Payment.objects.get(pk=payment.pk).fee_recorded
    return http.calls[-1].request.req_kwargs


def test_a_proxy_named_by_the_environment_carries_every_stripe_request(http, fresh_client, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    sent = _look_up_fee(http)

    assert sent["proxies"]["https"] == PROXY


def test_no_proxy_still_exempts_stripes_host(http, fresh_client, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "api.stripe.com")

    sent = _look_up_fee(http)

    assert "https" not in (sent.get("proxies") or {})


def test_a_request_does_not_read_the_environment(http, fresh_client, monkeypatch, environ_reads):
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    _look_up_fee(http)  # the worker's client is built, under the environment of the moment
    reads = environ_reads()
    _look_up_fee(http)

    assert not [k for k in reads if "proxy" in k.lower()]
