import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations import gateway
from integrations.alerts import alert_raise
from integrations.models import Alert, Budget, ProviderCall, UsageRollup
from integrations.usage import percentile_from_hist

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
    def test_it_fires_when_most_calls_this_hour_fail(self, fake_provider, settings):
        settings.FAILURE_ALERT_MIN_CALLS = 10
        settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "failure_threshold": 100}
        _calls(None, 12, fail=8)
        alert = Alert.objects.get(kind="provider_failure_rate")
        assert alert.provider == "acme" and alert.severity == "critical"

    def test_it_stays_quiet_below_the_threshold(self, fake_provider, settings):
        settings.FAILURE_ALERT_MIN_CALLS = 10
        _calls(None, 12, fail=3)
        assert not Alert.objects.exists()


class TestAlerts:
    def test_an_open_alert_is_counted_not_duplicated_and_reopens_after_resolve(self, db):
        from integrations.alerts import alert_resolve

        first = alert_raise(kind="quota", provider="openai", message="quota")
        again = alert_raise(kind="quota", provider="openai", message="quota again")
        assert first.pk == again.pk and again.occurrences == 2
        alert_resolve(alert=again)
        assert alert_raise(kind="quota", provider="openai", message="back").pk != first.pk


class TestDashboard:
    def test_staff_see_per_provider_figures_open_alerts(self, fake_provider, staff_user, client):
        _calls(None, 4, fail=1)
        alert_raise(kind="quota", provider="acme", message="acme quota is gone")
        client.force_login(staff_user)
        resp = client.get("/admin/integrations/providercall/dashboard/")
        assert resp.status_code == 200
        html = resp.content.decode()
        assert "Acme test provider" in html and "acme quota is gone" in html
        row = next(p for p in resp.context["providers"] if p["spec"].name == "acme")
        assert row["stats"]["calls"] == 4 and row["stats"]["errors"] == 1

    def test_staff_can_close_an_open_circuit(self, fake_provider, staff_user, client, settings):
        from integrations import breaker

        settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "failure_threshold": 2}
        _calls(None, 2, fail=2)
        assert breaker.state("acme") == "open"
        client.force_login(staff_user)
        assert "Close" in client.get("/admin/integrations/providercall/dashboard/").content.decode()
        client.post("/admin/integrations/providercall/dashboard/", {"close_circuit": "acme"})
        assert breaker.state("acme") == "closed"

    def test_non_staff_are_sent_to_login(self, user, client):
        client.force_login(user)
        assert client.get("/admin/integrations/providercall/dashboard/").status_code == 302

    def test_the_call_changelist_filters_by_provider_and_date_without_scanning_values(
        self, fake_provider, staff_user, client
    ):
        _calls(None, 3)
        client.force_login(staff_user)
        assert client.get("/admin/integrations/providercall/").status_code == 200
        resp = client.get("/admin/integrations/providercall/?provider=acme")
        assert resp.status_code == 200 and resp.context["cl"].result_count == 3
        assert client.get("/admin/integrations/providercall/?provider=stripe").context["cl"].result_count == 0
        choices = [c["display"] for c in resp.context["cl"].filter_specs[0].choices(resp.context["cl"])]
        assert "Stripe" in choices  # from the registry, not from the rows

    def test_the_date_hierarchy_drills_down_by_periods_from_min_and_max(self, fake_provider, staff_user, client):
        _calls(None, 2)
        ProviderCall.objects.filter(pk=ProviderCall.objects.first().pk).update(
            created_at=timezone.now() - dt.timedelta(days=40)
        )
        client.force_login(staff_user)
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            resp = client.get("/admin/integrations/providercall/")
        assert resp.status_code == 200
        assert not any("DISTINCT" in q["sql"] for q in queries.captured_queries)
        now = timezone.localtime()
        html = resp.content.decode()
        assert f"created_at__month={now.month}" in html or f"created_at__year={now.year}" in html
        year = client.get(
            f"/admin/integrations/providercall/?created_at__year={now.year}&created_at__month={now.month}"
        )
        assert year.status_code == 200 and f"created_at__day={now.day}" in year.content.decode()


def test_percentile_from_histogram_returns_the_bucket_bound():
    counts = [0, 90, 5, 5] + [0] * 8  # 5ms:0, 10ms:90, 25ms:5, 50ms:5
    assert percentile_from_hist(counts, 50) == 10
    assert percentile_from_hist(counts, 95) == 25
    assert percentile_from_hist(counts, 99) == 50
    assert percentile_from_hist([0] * 12, 95) is None


def test_staff_status_has_last_success_and_error_rate(fake_provider, staff_client):
    _calls(None, 4, fail=1)
    acme = next(r for r in staff_client.get("/api/v1/integrations/status/").json() if r["name"] == "acme")
    assert acme["calls_24h"] == 4 and acme["error_rate_24h"] == 0.25 and acme["last_success_at"]
