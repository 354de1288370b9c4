import os
import time

import pytest
import responses

from integrations import breaker
from integrations.errors import CircuitOpen, PermanentError, ProviderUnavailable
from integrations.models import ProviderCall
from tests.integrations import acme

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request, settings, fake_provider):
    settings.REDIS_URL = "" if request.param == "local" else os.environ["REDIS_URL"]
    settings.CIRCUIT_BREAKER = {"failure_threshold": 3, "cooldown_seconds": 0.3, "probe_timeout_seconds": 5}
    return request.param


def _fail(http, times, status=500):
    for _ in range(times):
        http.post(acme.URL, json={}, status=status)
        with pytest.raises((ProviderUnavailable, PermanentError)):
            acme.send({})


def test_it_opens_after_consecutive_failures_and_fails_fast(backend, user_client, settings):
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "cooldown_seconds": 5}
    with responses.RequestsMock() as http:
        _fail(http, 3)
        assert breaker.state("acme") == "open"
        with pytest.raises(CircuitOpen) as err:
            acme.send({})
        assert 0 < err.value.retry_after <= 5
        assert len(http.calls) == 3  # the fast failure never reached the provider
    assert ProviderCall.objects.filter(outcome="circuit_open").count() == 1
    status = {r["name"]: r for r in user_client.get("/api/v1/integrations/status/").json()}
    assert status["acme"]["circuit"] == "open"


def test_after_the_cooldown_one_probe_goes_through_and_success_closes_it(backend):
    with responses.RequestsMock() as http:
        _fail(http, 3)
        time.sleep(0.35)
        assert breaker.state("acme") == "half_open"
        first = breaker.before_call("acme")
        second = breaker.before_call("acme")
        assert first.allowed and first.state == "half_open"
        assert not second.allowed  # only one probe at a time
        breaker.after_call("acme", healthy=True)
        assert breaker.state("acme") == "closed"


def test_a_failed_probe_opens_the_circuit_again(backend):
    with responses.RequestsMock() as http:
        _fail(http, 3)
        time.sleep(0.35)
        _fail(http, 1)
        assert breaker.state("acme") == "open"


def test_client_errors_do_not_open_the_circuit(backend):
    with responses.RequestsMock() as http:
        _fail(http, 5, status=400)
    assert breaker.state("acme") == "closed"


def test_a_success_resets_the_failure_count(backend):
    with responses.RequestsMock() as http:
        _fail(http, 2)
        http.post(acme.URL, json={"units": {}})
        acme.send({})
        _fail(http, 2)
    assert breaker.state("acme") == "closed"


def test_reset_closes_by_hand(backend):
    with responses.RequestsMock() as http:
        _fail(http, 3)
    breaker.reset("acme")
    assert breaker.state("acme") == "closed"


@pytest.mark.redis
def test_a_closed_circuit_is_read_with_the_rate_token_and_only_an_open_one_asks_the_breaker(
    settings, fake_provider, monkeypatch
):
    """One Redis round trip fewer per call: the limiter's script reads a closed breaker (breaker.closed_permit)."""
    settings.REDIS_URL = os.environ["REDIS_URL"]
    settings.CIRCUIT_BREAKER = {"failure_threshold": 3, "cooldown_seconds": 5, "probe_timeout_seconds": 5}
    asked = []
    real = breaker.before_call
    monkeypatch.setattr(breaker, "before_call", lambda provider: asked.append(provider) or real(provider))
    with responses.RequestsMock() as http:
        http.post(acme.URL, json={"units": {}})
        acme.send({})
        _fail(http, 3)  # each failure still counts: the third opens the circuit
        assert asked == [] and breaker.state("acme") == "open"
        with pytest.raises(CircuitOpen):
            acme.send({})
        assert asked == ["acme"]  # open: the breaker itself decides (cooldown, the one probe)
        assert len(http.calls) == 4


def test_a_destinations_circuit_is_its_own_with_its_providers_settings(backend, settings):
    """gateway.attempt(circuit="acme:east"): a destination that fails opens its own circuit, under the
    provider's overrides, and leaves the provider's (and its other destinations') closed."""
    settings.CIRCUIT_BREAKER_OVERRIDES = {"acme": {"failure_threshold": 1}}
    breaker.after_call("acme:east", healthy=False)
    assert breaker.state("acme:east") == "open"
    assert breaker.states(["acme", "acme:west"]) == {"acme": "closed", "acme:west": "closed"}
