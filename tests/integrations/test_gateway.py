from decimal import Decimal

import pytest
import requests
import responses
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.response import Response

from integrations import limiter
from integrations.errors import (
    PermanentError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    parse_retry_after,
)
from integrations.models import ProviderCall, UsageRollup
from tests.integrations import acme

pytestmark = pytest.mark.django_db


@pytest.fixture
def http():
    with responses.RequestsMock() as rsps:
        yield rsps


def test_it_refuses_an_unconfigured_provider_and_records_nothing(fake_provider, settings, http):
    settings.ACME_API_KEY = ""
    with pytest.raises(ProviderNotConfigured) as err:
        acme.send({"to": "x"})
    assert err.value.missing == ["ACME_API_KEY"]
    assert ProviderCall.objects.count() == 0
    assert len(http.calls) == 0


@pytest.mark.redis
def test_tokens_taken_ahead_for_an_attempt_that_cannot_start_are_given_back(fake_provider, settings):
    """An AI request takes its first provider's tokens beside its budget hold (gateway.send_token_ahead); if that
    provider turns out not to be configured when the attempt starts, the attempt gives them back."""
    from asgiref.sync import async_to_sync

    from integrations import gateway

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "acme": {"requests": {"rate": 0.01, "burst": 1}}}
    taken = gateway.send_token_ahead("acme").answer()
    assert taken.decision.granted
    settings.ACME_API_KEY = ""

    async def attempt():
        async with gateway.aattempt("acme", "send", taken=taken):
            raise AssertionError("an unconfigured provider is not called")

    with pytest.raises(ProviderNotConfigured):
        async_to_sync(attempt)()
    assert limiter.take("acme").granted  # the bucket's one token is back
    assert ProviderCall.objects.count() == 0


def test_a_successful_call_is_logged_with_units_cost_and_request_id(fake_provider, http, user):
    http.post(acme.URL, json={"id": "m1", "units": {"segments": 2}}, headers={"Request-Id": "req_abc"})
    acme.send({"to": "x"}, owner=user, related=("messaging.sms", "42"))
    call = ProviderCall.objects.get()
    assert (call.provider, call.operation, call.outcome, call.http_status) == ("acme", "send", "ok", 200)
    assert call.provider_request_id == "req_abc"
    assert call.units == {"segments": 2}
    assert call.cost_usd == Decimal("0.020000")  # 0.01 per call + 2 x 0.005
    assert call.owner == user and call.attempt == 1 and call.latency_ms > 0
    assert (call.related_type, call.related_id) == ("messaging.sms", "42")
    rollup = UsageRollup.objects.get()
    assert (rollup.calls, rollup.errors, rollup.cost_usd, rollup.sms_segments, rollup.requests) == (
        1,
        0,
        Decimal("0.02"),
        2,
        0,
    )


def test_an_explicit_cost_wins_over_the_price_table(fake_provider, user):
    from integrations import gateway

    with gateway.attempt("acme", "send", owner=user) as call:
        call.record(cost_usd="1.25", units={"segments": 1})
    assert ProviderCall.objects.get().cost_usd == Decimal("1.25")


@pytest.mark.parametrize(
    "status,body,headers,error_type,outcome,retryable",
    [
        (500, {"message": "boom"}, {}, ProviderUnavailable, "error", True),
        (503, {}, {"Retry-After": "7"}, ProviderUnavailable, "error", True),
        (429, {"code": "rate_limit"}, {"Retry-After": "3"}, ProviderRateLimited, "rate_limited", True),
        (429, {"code": "insufficient_quota"}, {}, QuotaExceeded, "error", False),
        (400, {"code": "invalid_number"}, {}, PermanentError, "error", False),
        (401, {"code": "bad_key"}, {}, PermanentError, "error", False),
        (500, {}, {"Stripe-Should-Retry": "false"}, PermanentError, "error", False),
        (409, {}, {"Stripe-Should-Retry": "true"}, ProviderUnavailable, "error", True),
    ],
)
def test_http_failures_are_classified(fake_provider, http, status, body, headers, error_type, outcome, retryable):
    http.post(acme.URL, json=body, status=status, headers=headers)
    with pytest.raises(error_type) as err:
        acme.send({})
    assert err.value.retryable is retryable
    call = ProviderCall.objects.get()
    assert (call.outcome, call.http_status, call.retryable) == (outcome, status, retryable)
    assert call.cost_usd == 0


def test_a_provider_429_blocks_the_scope_for_at_least_retry_after(fake_provider, http):
    http.post(acme.URL, json={}, status=429, headers={"Retry-After": "30"})
    with pytest.raises(ProviderRateLimited) as err:
        acme.send({}, scope="+15550001")
    assert err.value.retry_after == 30
    assert limiter.blocked_for("acme", "+15550001") > 29
    decision = limiter.take("acme", "+15550001")
    assert not decision.granted and decision.wait > 29
    assert limiter.take("acme", "+15550002").granted  # another sender is not blocked


def test_timeouts_and_connection_errors_are_retryable(fake_provider, http):
    http.post(acme.URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(ProviderTimeout):
        acme.send({})
    http.post(acme.URL, body=requests.exceptions.ConnectionError("connection refused"))
    with pytest.raises(ProviderUnavailable):
        acme.send({})
    assert list(ProviderCall.objects.order_by("id").values_list("outcome", "retryable")) == [
        ("timeout", True),
        ("error", True),
    ]


def test_an_unknown_exception_is_recorded_and_reraised_untouched(fake_provider):
    from integrations import gateway

    with pytest.raises(KeyError), gateway.attempt("acme", "send"):
        raise KeyError("bug")
    call = ProviderCall.objects.get()
    assert (call.outcome, call.retryable, call.error_code) == ("error", False, "KeyError")


def test_secrets_never_reach_the_stored_error_message(fake_provider, http, settings):
    settings.STRIPE_SECRET_KEY = "sk_live_abcdefghijklmnop"
    leaky = (
        f"invalid key {settings.ACME_API_KEY}; header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload "
        "also sk_live_abcdefghijklmnop and api_key=zzzzzzzzzzzz"
    )
    http.post(acme.URL, json={"message": leaky}, status=400)
    with pytest.raises(PermanentError):
        acme.send({})
    stored = ProviderCall.objects.get().error_message
    for secret in (settings.ACME_API_KEY, "eyJhbGciOiJIUzI1NiJ9", "sk_live_abcdefghijklmnop", "zzzzzzzzzzzz"):
        assert secret not in stored
    assert "invalid key" in stored


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0  # in the past: no wait


@api_view(["POST"])
def _send_view(request):
    return Response(acme.send(request.data, owner=request.user))


urlpatterns = [path("send/", _send_view)]


@pytest.mark.urls(__name__)
class TestInsideAWebRequest:
    def test_not_configured_answers_503_with_the_missing_names(self, fake_provider, settings, user_client):
        settings.ACME_API_KEY = ""
        resp = user_client.post("/send/", {}, format="json")
        assert resp.status_code == 503
        assert resp.json() == {
            "error": "provider_not_configured",
            "detail": "acme is not configured; set ACME_API_KEY.",
            "provider": "acme",
            "missing": ["ACME_API_KEY"],
        }

    def test_a_provider_429_answers_503_with_retry_after(self, fake_provider, http, user_client):
        http.post(acme.URL, json={}, status=429, headers={"Retry-After": "4"})
        resp = user_client.post("/send/", {}, format="json")
        assert resp.status_code == 503
        assert resp["Retry-After"] == "4"
        assert resp.json()["error"] == "provider_rate_limited"

    def test_a_provider_5xx_answers_502(self, fake_provider, http, user_client):
        http.post(acme.URL, json={}, status=502)
        resp = user_client.post("/send/", {}, format="json")
        assert resp.status_code == 502
        assert resp.json()["error"] == "provider_unavailable"


def test_a_quota_refusal_raises_one_critical_quota_alert(fake_provider, http):
    from integrations.models import Alert

    for _ in range(2):
        http.post(acme.URL, json={"code": "insufficient_quota", "message": "You exceeded your quota"}, status=429)
        with pytest.raises(QuotaExceeded):
            acme.send({})
    alert = Alert.objects.get(kind="quota")
    assert (alert.provider, alert.severity, alert.occurrences) == ("acme", "critical", 2)
    assert "insufficient_quota" in alert.message
