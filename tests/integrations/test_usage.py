import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations import gateway
from integrations.alerting.thresholds import call_rates, thresholds_evaluate
from integrations.alerts import alert_raise
from integrations.models import Alert, Budget, ProviderCall, UsageRollup

pytestmark = pytest.mark.django_db


def _calls(owner, n, *, cost="0.10", fail=0, provider="acme"):
    for i in range(n):
        try:
            with gateway.attempt(provider, "send", owner=owner) as call:
                if i >= n - fail:  # failures come last
                    raise ConnectionError("down")
                call.record(cost_usd=cost, units={"segments": 1})
        except Exception:  # noqa: BLE001
            pass


class TestUsageApi:
    def test_it_sums_only_my_calls_this_month_by_provider(self, fake_provider, user, other_user, user_client):
        _calls(user, 3)
        _calls(other_user, 5)
        body = user_client.get("/api/v1/integrations/usage/").json()
        assert body["month"] == f"{timezone.now():%Y-%m}"
        assert Decimal(body["total_cost_usd"]) == Decimal("0.30")
        assert [(p["provider"], p["calls"], Decimal(p["cost_usd"])) for p in body["providers"]] == [
            ("acme", 3, Decimal("0.30"))
        ]

    def test_last_months_calls_are_not_counted(self, fake_provider, user, user_client):
        UsageRollup.objects.create(
            hour=timezone.now().replace(day=1, hour=0) - dt.timedelta(hours=1),
            provider="acme",
            owner=user,
            calls=9,
            cost_usd=9,
        )
        _calls(user, 1)
        body = user_client.get("/api/v1/integrations/usage/").json()
        assert body["providers"][0]["calls"] == 1

    def test_it_needs_authentication(self, api_client):
        assert api_client.get("/api/v1/integrations/usage/").status_code == 401

    def test_each_unit_is_kept_apart_never_summed(self, fake_provider, user, user_client):
        """Issue 18.5: 17 requests and $55 moved are not "72 units"; cached tokens are not added to input tokens."""
        for _ in range(17):
            with gateway.attempt("acme", "customer.create", owner=user) as call:
                call.record(units={"requests": 1})
        with gateway.attempt("acme", "charge", owner=user) as call:
            call.record(units={"amount_usd": 55})
        with gateway.attempt("acme", "complete", owner=user) as call:
            call.record(units={"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 1000})
        with gateway.attempt("acme", "put", owner=user) as call:
            call.record(units={"bytes_in": 4096, "requests": 2, "segments": 3, "minutes": 2})
        acme = user_client.get("/api/v1/integrations/usage/").json()["providers"][0]
        assert acme["calls"] == 20
        units = acme["units"]
        assert units["requests"] == 19 and Decimal(units["money_moved_usd"]) == Decimal("55.00")
        assert (units["input_tokens"], units["output_tokens"], units["cached_tokens"]) == (1200, 300, 1000)
        assert (units["bytes_in"], units["sms_segments"], units["call_minutes"]) == (4096, 3, 2)
        assert units["bytes_out"] == 0 and units["bytes_copied"] == 0

    def test_a_key_no_unit_claims_is_not_rolled_up_into_another(self, fake_provider, user, user_client):
        with gateway.attempt("acme", "charge", owner=user) as call:
            call.record(units={"amount_minor": 4900, "requests": 1})  # 4900 yen are not 4900 requests
        units = user_client.get("/api/v1/integrations/usage/").json()["providers"][0]["units"]
        assert units["requests"] == 1 and Decimal(units["money_moved_usd"]) == 0
        assert "amount_minor" not in units


class TestCallsApi:
    def test_it_lists_my_calls_newest_first_with_a_cursor(self, fake_provider, user, other_user, user_client):
        _calls(user, 3)
        _calls(other_user, 2)
        page = user_client.get("/api/v1/integrations/calls/?page_size=2").json()
        assert len(page["results"]) == 2 and page["next"]
        rest = user_client.get(page["next"]).json()
        ids = [c["id"] for c in page["results"] + rest["results"]]
        mine = list(ProviderCall.objects.filter(owner=user).order_by("-created_at", "-id").values_list("id", flat=True))
        assert sorted(ids) == sorted(mine)
        assert "error_message" in page["results"][0] and "idempotency_key" not in page["results"][0]

    def test_it_filters_by_provider(self, fake_provider, user, user_client):
        _calls(user, 2)
        assert user_client.get("/api/v1/integrations/calls/?provider=stripe").json()["results"] == []


class TestBudgets:
    def test_alerts_at_80_then_100_percent_once_each(self, fake_provider, user):
        Budget.objects.create(provider="acme", owner=None, monthly_limit_usd=Decimal("1.00"))
        _calls(user, 7)  # 0.70: nothing
        assert not Alert.objects.filter(kind="budget_threshold").exists()
        _calls(user, 2)  # 0.90: 80 %
        assert list(Alert.objects.filter(kind="budget_threshold").values_list("severity", flat=True)) == ["warning"]
        _calls(user, 3)  # 1.20: 100 %, and the 80 % alert is not raised again
        alerts = Alert.objects.filter(kind="budget_threshold")
        assert sorted(alerts.values_list("severity", flat=True)) == ["critical", "warning"]
        assert alerts.get(severity="warning").occurrences == 2  # counted, not duplicated

    def test_an_owner_budget_counts_only_that_owner(self, fake_provider, user, other_user):
        Budget.objects.create(provider="acme", owner=user, monthly_limit_usd=Decimal("0.50"))
        _calls(other_user, 10)
        assert not Alert.objects.exists()
        _calls(user, 5)
        assert sorted(Alert.objects.values_list("severity", flat=True)) == ["critical", "warning"]


class TestFailureRateAlert:
    def test_an_outage_is_one_alert_which_the_evaluation_opens_and_resolves(self, fake_provider, settings):
        """Failed calls raise no alert of their own as they are recorded (that one, keyed per hour, never resolved
        itself and doubled the evaluation's for the same outage): the evaluation raises one, and resolves it."""
        settings.ALERT_MIN_CALLS = 10
        settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "failure_threshold": 100}
        _calls(None, 12, fail=8)
        assert not Alert.objects.exists()
        now = timezone.now()
        thresholds_evaluate(now=now, checks=[call_rates])
        alert = Alert.objects.get(kind="provider_failure_rate")
        assert (alert.provider, alert.severity, alert.dedupe_key) == ("acme", "critical", "threshold:error_rate:acme")
        # No failures since, and a full run (a partial one cannot tell what is back under): resolved.
        thresholds_evaluate(now=now + dt.timedelta(minutes=settings.ALERT_WINDOW_MINUTES + 1))
        alert.refresh_from_db()
        assert alert.resolved_at is not None

    def test_it_stays_quiet_below_the_threshold(self, fake_provider, settings):
        settings.ALERT_MIN_CALLS = 10
        _calls(None, 12, fail=2)
        thresholds_evaluate(now=timezone.now(), checks=[call_rates])
        assert not Alert.objects.exists()


class TestAlerts:
    def test_an_open_alert_is_counted_not_duplicated_and_reopens_after_resolve(self, db):
        from integrations.alerts import alert_resolve

        first = alert_raise(kind="quota", provider="openai", message="quota")
        again = alert_raise(kind="quota", provider="openai", message="quota again")
        assert first.pk == again.pk and again.occurrences == 2
        alert_resolve(alert=again)
        assert alert_raise(kind="quota", provider="openai", message="back").pk != first.pk


def test_staff_status_has_last_success_and_error_rate(fake_provider, staff_client):
    _calls(None, 4, fail=1)
    acme = next(r for r in staff_client.get("/api/v1/integrations/status/").json() if r["name"] == "acme")
    assert acme["calls_24h"] == 4 and acme["error_rate_24h"] == 0.25 and acme["last_success_at"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_splits_existing_rollups_by_unit_from_the_call_log():
    """Issue 18.5: roll-ups written before the split get their units back, each in its own column."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("integrations", "0011_oauth_connections")]
    executor = MigrationExecutor(connection)
    # Every app's leaf: going back to 0011 also unapplies the apps that depend on integrations (scheduling's
    # calendars), and they must come back too or later tests find their tables gone.
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        Call, Rollup = old.get_model("integrations", "ProviderCall"), old.get_model("integrations", "UsageRollup")
        at = timezone.now().replace(minute=10, second=0, microsecond=0)
        hour = at.replace(minute=0)
        for units in [{"requests": 1}] * 17 + [{"amount_usd": 55}, {"input_tokens": 10, "cached_tokens": 8}]:
            Call.objects.create(provider="stripe", operation="x", outcome="ok", units=units, created_at=at)
        Rollup.objects.create(hour=hour, provider="stripe", owner=None, calls=19, units=Decimal("90"))
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        rollup = UsageRollup.objects.get(hour=hour, provider="stripe")
        assert (rollup.calls, rollup.requests, rollup.money_moved_usd) == (19, 17, Decimal("55.00"))
        assert (rollup.input_tokens, rollup.cached_tokens, rollup.output_tokens) == (10, 8, 0)
        from integrations.models import ProviderRollup

        per_provider = ProviderRollup.objects.get(hour=hour, provider="stripe")
        assert (per_provider.calls, per_provider.ok, per_provider.requests) == (19, 19, 17)
    finally:
        MigrationExecutor(connection).migrate(latest)
