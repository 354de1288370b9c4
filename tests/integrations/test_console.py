"""The staff console in admin: overview, triage lists, append-only records, staff actions, money, charts, formats."""

import datetime as dt
import re
from decimal import Decimal
from html import unescape

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from integrations import breaker, gateway
from integrations.admin_format import minor_units, usd
from integrations.alerts import alert_raise
from integrations.models import Alert, Budget, ProviderCall, ProviderRollup, UsageRollup, WebhookEvent
from integrations.usage import latency_percentile
from tests.integrations.factories import WebhookEventFactory

pytestmark = pytest.mark.django_db


def _calls(owner, n, *, cost="0.10", fail=0, provider="acme", units=None):
    for i in range(n):
        try:
            with gateway.attempt(provider, "send", owner=owner) as call:
                if i >= n - fail:  # failures come last
                    raise ConnectionError("down")
                call.record(cost_usd=cost, units=units or {"segments": 1})
        except Exception:  # noqa: BLE001
            pass


def _text(resp):
    """The page's visible words, roughly: tags dropped, whitespace collapsed."""
    html = re.sub(r"<(script|style|title)[^>]*>.*?</\1>", " ", resp.content.decode(), flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture
def staff(staff_user, client):
    client.force_login(staff_user)
    return client


class TestOverview:
    def test_the_admin_index_shows_each_provider_with_figures_that_link_to_their_calls(self, fake_provider, staff):
        _calls(None, 4, fail=1)
        resp = staff.get("/admin/")
        assert resp.status_code == 200
        text = _text(resp)
        assert "Providers, last 24 h" in text and "Acme test provider" in text
        html = resp.content.decode()
        row = re.search(r'<tr data-provider="acme">(.*?)</tr>', html, re.S).group(1)
        assert ">4</a>" in row and ">1</a>" in row and "25 %" in row and "$0.30" in row
        assert "/admin/integrations/providercall/?provider=acme&amp;since=24h&amp;outcome=failed" in row
        # and the link lists exactly the failure counted
        listed = staff.get("/admin/integrations/providercall/?provider=acme&since=24h&outcome=failed")
        assert listed.context["cl"].result_count == 1

    def test_p50_and_p95_are_milliseconds_not_bucket_bounds(self, fake_provider, staff):
        hour = timezone.now().replace(minute=0, second=0, microsecond=0)
        counts = {"l20": 50, "l26": 45, "l30": 5}  # 32 ms, 90.5 ms, 181 ms buckets
        ProviderRollup.objects.create(hour=hour, provider="acme", calls=100, ok=100, **counts)
        row = next(r for r in staff.get("/admin/?window=1h").context["overview"]["rows"] if r["name"] == "acme")
        assert 27 < row["p50_ms"] <= 32 and row["p50_ms"] != 32
        assert 76 < row["p95_ms"] < 90.6
        assert "ms" in _text(staff.get("/admin/?window=1h")) and "≤" not in _text(staff.get("/admin/?window=1h"))

    def test_windows_count_back_from_now_exactly(self, fake_provider, staff):
        _calls(None, 3)
        old = ProviderCall.objects.order_by("id").first()
        # One call 2 h ago: in the 24 h window, not in the 1 h one (the roll-up moves with it).
        two_hours_ago = timezone.now() - dt.timedelta(hours=2)
        ProviderCall.objects.filter(pk=old.pk).update(created_at=two_hours_ago)
        ProviderRollup.objects.all().delete()
        from integrations.usage import rollup_record

        for call in ProviderCall.objects.all():
            rollup_record(
                provider=call.provider,
                owner_id=None,
                at=call.created_at,
                outcome=call.outcome,
                latency_ms=call.latency_ms,
                units=call.units,
                cost_usd=call.cost_usd,
            )
        rows = {w: staff.get(f"/admin/?window={w}").context["overview"]["total"]["calls"] for w in ("1h", "24h")}
        assert rows == {"1h": 2, "24h": 3}
        assert staff.get("/admin/integrations/providercall/?since=1h").context["cl"].result_count == 2

    def test_closed_hours_are_read_once_and_a_backfill_resets_them(self, staff):
        from integrations.admin_console import console_cache_reset

        three_hours_ago = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
        ProviderRollup.objects.create(hour=three_hours_ago, provider="stripe", calls=5, ok=5)

        def total():
            return staff.get("/admin/").context["overview"]["total"]["calls"]

        assert total() == 5
        ProviderRollup.objects.create(hour=three_hours_ago, provider="s3", calls=2, ok=2)  # written into the past
        assert total() == 5  # a closed hour is not summed again
        console_cache_reset()
        assert total() == 7

    def test_staff_open_and_close_a_circuit_and_it_is_logged(self, fake_provider, staff, staff_user):
        resp = staff.post("/admin/integrations/providercall/circuit/", {"provider": "acme", "action": "open"})
        assert resp.status_code == 302 and breaker.state("acme") == "open"
        assert "Close" in _text(staff.get("/admin/"))
        staff.post("/admin/integrations/providercall/circuit/", {"provider": "acme", "action": "close"})
        assert breaker.state("acme") == "closed"
        assert list(LogEntry.objects.order_by("id").values_list("change_message", flat=True)) == [
            "Opened the circuit for acme by hand.",
            "Closed the circuit for acme by hand.",
        ]
        assert LogEntry.objects.filter(user=staff_user).count() == 2
        assert "Circuit acme" in _text(staff.get("/admin/"))  # "Recent actions"

    def test_staff_who_may_only_view_calls_can_neither_open_a_circuit_nor_see_the_buttons(self, fake_provider, client):
        from django.contrib.auth.models import Permission

        from tests.factories import UserFactory

        reader = UserFactory(is_staff=True)
        reader.user_permissions.add(Permission.objects.get(codename="view_providercall"))
        client.force_login(reader)
        resp = client.post("/admin/integrations/providercall/circuit/", {"provider": "acme", "action": "open"})
        assert resp.status_code == 404 and breaker.state("acme") == "closed"
        assert 'value="open"' not in client.get("/admin/").content.decode()
        reader.user_permissions.add(Permission.objects.get(codename="change_providercall"))
        assert 'value="open"' in client.get("/admin/").content.decode()
        client.post("/admin/integrations/providercall/circuit/", {"provider": "acme", "action": "open"})
        assert breaker.state("acme") == "open"

    def test_staff_see_on_the_overview_only_what_their_permissions_let_them_view(self, fake_provider, client):
        # The call log's figures and cost, alerts and failed webhooks each need the view permission of their records,
        # as the money page, the charts and the records' own lists do; the overview showed them to any staff.
        from django.contrib.auth.models import Permission

        from tests.factories import UserFactory

        _calls(None, 4, fail=1)
        alert_raise(kind=Alert.Kind.WEBHOOK_FAILED, provider="hubtest", message="Webhook hubtest went wrong")
        WebhookEventFactory(status="failed", attempts=5, type="thing.refused", last_error="boom", next_attempt_at=None)
        staff = UserFactory(is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_refund"))
        client.force_login(staff)
        html = client.get("/admin/").content.decode()
        assert 'data-provider="acme"' not in html and "$0.30" not in html and "console-figure" not in html
        assert "Webhook hubtest went wrong" not in html and "thing.refused" not in html
        assert re.findall(r'data-kind="([^"]+)"', html) == ["payments.refund_send"]
        for codename in ("view_providercall", "view_alert", "view_webhookevent", "view_smsmessage"):
            staff.user_permissions.add(Permission.objects.get(codename=codename))
        staff = type(staff).objects.get(pk=staff.pk)  # permissions are cached on the user
        client.force_login(staff)
        html = client.get("/admin/").content.decode()
        assert 'data-provider="acme"' in html and "$0.30" in html and "console-figure" in html
        assert "Webhook hubtest went wrong" in html and "thing.refused" in html
        # In the outbox registry's order, which is the order the apps registered their kinds in: compared as a set.
        assert sorted(re.findall(r'data-kind="([^"]+)"', html)) == ["messaging.sms_send", "payments.refund_send"]

    def test_the_header_links_only_the_pages_the_staff_member_may_open(self, client, staff_user):
        # Each page refuses staff without its model's view permission; the header linked every one to any staff.
        from django.contrib.auth.models import Permission

        from tests.factories import UserFactory

        def nav(user):
            client.force_login(type(user).objects.get(pk=user.pk))  # permissions are cached on the user
            html = client.get("/admin/").content.decode()
            links = re.search(r'<nav class="console-nav"[^>]*>(.*?)</nav>', html, flags=re.S).group(1)
            shown = dict(re.findall(r'<a href="([^"]*)">([^<]+)</a>', links))
            for href in shown:  # every link shown opens
                assert client.get(unescape(href)).status_code == 200, href
            return sorted(shown.values())

        staff = UserFactory(is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_refund"))
        assert nav(staff) == ["API docs", "Overview"]
        staff.user_permissions.add(Permission.objects.get(codename="view_alert"))
        assert nav(staff) == ["API docs", "Open alerts", "Overview"]
        staff.user_permissions.add(Permission.objects.get(codename="change_webhookevent"))  # change implies view
        assert nav(staff) == ["API docs", "Failed webhooks", "Open alerts", "Overview"]
        staff.user_permissions.add(Permission.objects.get(codename="view_providercall"))
        everything = ["API docs", "Calls", "Failed webhooks", "Failures", "Money", "Open alerts", "Overview"]
        assert nav(staff) == everything
        assert nav(staff_user) == everything  # a superuser

    def test_non_staff_are_sent_to_login(self, user, client):
        client.force_login(user)
        assert client.get("/admin/").status_code == 302
        assert client.post("/admin/integrations/providercall/circuit/", {"provider": "acme"}).status_code == 302

    def test_the_old_dashboard_address_leads_to_the_overview(self, staff):
        assert staff.get("/admin/integrations/providercall/dashboard/")["Location"] == "/admin/"

    def test_an_empty_hub_says_so_in_words(self, staff):
        text = _text(staff.get("/admin/"))
        assert "No calls in this period." in text and "No open alerts." in text and "No failed webhooks." in text


class TestCallList:
    def test_columns_show_error_code_meaning_and_money(self, fake_provider, staff, user):
        ProviderCall.objects.create(
            provider="twilio",
            operation="sms.send",
            owner=user,
            outcome="error",
            http_status=400,
            error_code="21610",
            error_message="Attempt to send to unsubscribed recipient",
            latency_ms=123.4,
            cost_usd=Decimal("0.000035"),
            created_at=timezone.now(),
        )
        resp = staff.get("/admin/integrations/providercall/?outcome=failed&since=1h")
        text = _text(resp)
        assert "21610" in text and "Attempt to send to unsubscribed recipient" in text and "123 ms" in text
        assert "$0.00004" in text and user.username in text
        assert "recipient unsubscribed" in resp.content.decode()  # the vendor's meaning, on hover
        detail = staff.get(f"/admin/integrations/providercall/{ProviderCall.objects.get().pk}/change/")
        body = _text(detail)
        assert "The recipient unsubscribed (replied STOP)" in body and "UTC" in body
        assert 'name="_save"' not in detail.content.decode()

    def test_any_failure_means_error_rate_limited_and_timeout(self, staff):
        now = timezone.now()
        for outcome in ["ok", "error", "rate_limited", "timeout", "circuit_open"]:
            ProviderCall.objects.create(provider="acme", operation="x", outcome=outcome, created_at=now)
        cl = staff.get("/admin/integrations/providercall/?outcome=failed").context["cl"]
        assert sorted(c.outcome for c in cl.result_list) == ["error", "rate_limited", "timeout"]

    def test_search_by_request_id_owner_and_error_text(self, staff, user):
        now = timezone.now()
        ProviderCall.objects.create(
            provider="stripe", operation="a", outcome="ok", provider_request_id="req_123", created_at=now
        )
        ProviderCall.objects.create(provider="stripe", operation="b", outcome="ok", owner=user, created_at=now)
        ProviderCall.objects.create(
            provider="stripe", operation="c", outcome="error", error_message="Your card was declined.", created_at=now
        )
        for term, op in [("req_123", "a"), (user.username, "b"), ("declined", "c")]:
            cl = staff.get("/admin/integrations/providercall/", {"q": term}).context["cl"]
            assert [c.operation for c in cl.result_list] == [op], term

    def test_calls_and_rollups_cannot_be_added_changed_or_deleted(self, fake_provider, staff):
        _calls(None, 1)
        call = ProviderCall.objects.get()
        rollup = UsageRollup.objects.get()
        assert staff.get("/admin/integrations/providercall/add/").status_code == 403
        assert staff.post(f"/admin/integrations/providercall/{call.pk}/delete/").status_code == 403
        assert staff.post(f"/admin/integrations/usagerollup/{rollup.pk}/delete/").status_code == 403
        page = staff.get(f"/admin/integrations/usagerollup/{rollup.pk}/change/").content.decode()
        assert 'name="_save"' not in page
        assert ProviderCall.objects.count() == 1 and UsageRollup.objects.count() == 1
        listing = staff.get("/admin/integrations/usagerollup/")
        assert "SMS segments: 1" in _text(listing)


class TestWebhooksAndAlerts:
    def test_the_event_page_replays_and_a_success_resolves_its_alert(
        self, staff, staff_user, monkeypatch, django_capture_on_commit_callbacks
    ):
        from integrations.webhooks.registry import HANDLERS

        event = WebhookEventFactory(
            status="failed", attempts=5, last_error="KeyError: 'customer'", next_attempt_at=None
        )
        alert = alert_raise(
            kind=Alert.Kind.WEBHOOK_FAILED,
            provider="hubtest",
            message="Webhook hubtest thing.updated failed",
            dedupe_key="webhook_failed:hubtest:thing.updated",
        )
        monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), lambda e: None)
        page = staff.get(f"/admin/integrations/webhookevent/{event.pk}/change/")
        assert "Replay" in _text(page) and 'name="_save"' not in page.content.decode()
        assert "KeyError" in _text(staff.get("/admin/integrations/webhookevent/?status__exact=failed"))
        from config.celery import app

        app.conf.task_always_eager = True
        try:
            with django_capture_on_commit_callbacks(execute=True):
                resp = staff.post(f"/admin/integrations/webhookevent/{event.pk}/replay/", follow=True)
        finally:
            app.conf.task_always_eager = False
        event.refresh_from_db()
        alert.refresh_from_db()
        assert event.status == "processed" and alert.resolved_at is not None
        assert "Replay" in _text(resp)
        assert LogEntry.objects.get(object_id=str(event.pk)).change_message == "Replayed."
        assert staff.post(f"/admin/integrations/webhookevent/{event.pk}/delete/").status_code == 403

    def test_the_alert_stays_open_while_another_event_of_its_kind_is_still_failed(self, monkeypatch, db):
        from integrations.webhooks.processing import webhook_event_process
        from integrations.webhooks.registry import HANDLERS

        first = WebhookEventFactory(status="failed", attempts=1, last_error="boom", next_attempt_at=timezone.now())
        WebhookEventFactory(status="failed", attempts=5, last_error="boom", next_attempt_at=None)
        alert = alert_raise(
            kind="webhook_failed", provider="hubtest", message="m", dedupe_key="webhook_failed:hubtest:thing.updated"
        )
        monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), lambda e: None)
        webhook_event_process(event_id=first.pk)
        alert.refresh_from_db()
        assert alert.resolved_at is None

    def test_alerts_are_acknowledged_then_resolved_by_buttons_and_link_to_their_source(self, staff, staff_user):
        alert = alert_raise(kind="quota", provider="openai", message="openai refuses calls for quota")
        page = staff.get(f"/admin/integrations/alert/{alert.pk}/change/")
        text = _text(page)
        assert "Acknowledge" in text and "Resolve" in text and "openai's failed calls" in text
        assert "/admin/integrations/providercall/?provider=openai&amp;outcome=failed" in page.content.decode()
        staff.post(f"/admin/integrations/alert/{alert.pk}/act/", {"action": "acknowledge"})
        alert.refresh_from_db()
        assert alert.acknowledged_by == staff_user and alert.resolved_at is None
        staff.post(f"/admin/integrations/alert/{alert.pk}/act/", {"action": "resolve"})
        alert.refresh_from_db()
        assert alert.resolved_by == staff_user and alert.resolved_at is not None
        assert list(LogEntry.objects.order_by("id").values_list("change_message", flat=True)) == [
            "Acknowledged.",
            "Resolved.",
        ]
        assert staff.post(f"/admin/integrations/alert/{alert.pk}/delete/").status_code == 403
        assert staff.get("/admin/integrations/alert/add/").status_code == 403


class TestMoney:
    def test_this_month_last_month_projection_budget_and_top_spenders(self, fake_provider, staff, user, other_user):
        Budget.objects.create(provider="acme", monthly_limit_usd=Decimal("10.00"))
        _calls(user, 3, cost="1.50")
        _calls(other_user, 1, cost="0.25")
        last_month = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=3)
        ProviderRollup.objects.create(hour=last_month, provider="acme", calls=7, ok=7, cost_usd=Decimal("3.10"))
        resp = staff.get("/admin/integrations/providercall/money/")
        assert resp.status_code == 200
        money = resp.context["money"]
        assert money["total"] == Decimal("4.75") and money["last_total"] == Decimal("3.10")
        assert money["projected"] >= money["total"]
        text = _text(resp)
        assert "$4.75" in text and "$3.10" in text and "$10.00" in text and "48 %" in text
        html = resp.content.decode()
        assert f'href="/admin/integrations/providercall/?owner__id__exact={user.pk}"' in html
        top = money["top_spenders"]
        assert [(s["owner_id"], s["cost"]) for s in top] == [
            (user.pk, Decimal("4.50")),
            (other_user.pk, Decimal("0.25")),
        ]

    def test_spend_is_split_by_kind_of_service_and_a_provider_in_no_kind_is_other(self, staff):
        hour = timezone.now().replace(minute=0, second=0, microsecond=0)
        last_month = hour.replace(day=1, hour=0) - dt.timedelta(days=3)
        this_month = {
            "openai": "2.00",
            "anthropic": "1.00",  # AI: both model vendors
            "twilio": "0.50",
            "email": "0.00",  # SMS, voice and mail
            "stripe": "0.30",
            "s3": "0.20",
            "clamav": "0.00",
            "google_oauth": "0.00",
            "audit_archive": "0.05",  # the audit trail's bucket: operations, not sign-in
            "alert_webhook": "0.00",
            "retired_vendor": "0.10",  # rows of a provider no longer registered
        }
        for provider, cost in this_month.items():
            ProviderRollup.objects.create(hour=hour, provider=provider, calls=1, ok=1, cost_usd=Decimal(cost))
        ProviderRollup.objects.create(hour=last_month, provider="openai", calls=4, ok=4, cost_usd=Decimal("1.25"))
        resp = staff.get("/admin/integrations/providercall/money/")
        money = resp.context["money"]
        kinds = {k["kind"]: k for k in money["kinds"]}
        assert {name: k["spent"] for name, k in kinds.items()} == {
            "AI tokens": Decimal("3.00"),
            "SMS, voice and mail": Decimal("0.50"),
            "Payment fees": Decimal("0.30"),
            "Storage and transfer": Decimal("0.20"),
            "Other": Decimal("0.10"),
            "Operations (alerts, audit archive)": Decimal("0.05"),
            "Sign-in (OAuth)": Decimal("0.00"),
        }
        assert list(kinds)[:2] == ["AI tokens", "SMS, voice and mail"]  # largest first
        assert kinds["AI tokens"]["last"] == Decimal("1.25") and kinds["Payment fees"]["last"] == 0
        assert sum(k["spent"] for k in kinds.values()) == money["total"] == Decimal("4.15")
        cent = Decimal("0.01")  # the projection multiplies by a long fraction: equal up to its last digits
        assert sum(k["projected"] for k in kinds.values()).quantize(cent) == money["projected"].quantize(cent)
        assert kinds["AI tokens"]["projected"] >= Decimal("3.00")
        text = _text(resp)
        assert "AI tokens $3.00 $1.25" in text and "Other $0.10" in text

    def test_an_empty_month_says_so(self, staff):
        text = _text(staff.get("/admin/integrations/providercall/money/"))
        assert "No spend recorded" in text and "No spend in this period." in text

    def test_staff_who_may_not_view_the_call_log_see_neither_the_money_page_nor_its_charts(self, client):
        from django.contrib.auth.models import Permission

        from tests.factories import UserFactory

        staff = UserFactory(is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_invoice"))
        client.force_login(staff)
        assert client.get("/admin/integrations/providercall/money/").status_code == 403
        assert client.get("/admin/integrations/providercall/charts/cost.svg").status_code == 403
        staff.user_permissions.add(Permission.objects.get(codename="view_providercall"))
        assert client.get("/admin/integrations/providercall/money/").status_code == 200
        assert client.get("/admin/integrations/providercall/charts/cost.svg").status_code == 200

    @pytest.mark.parametrize("month", ["0001-01", "9999-12", "2026-13", "abc"])
    def test_a_month_the_page_cannot_show_is_this_month_not_a_500(self, staff, month):
        resp = staff.get("/admin/integrations/providercall/money/", {"month": month})
        assert resp.status_code == 200
        assert resp.context["money"]["month"] == f"{timezone.now():%Y-%m}"

    def test_the_first_and_last_months_that_have_a_neighbour_still_show(self, staff):
        for month in ("1000-01", "9998-12"):
            assert (
                staff.get("/admin/integrations/providercall/money/", {"month": month}).context["money"]["month"]
                == month
            )


class TestCharts:
    @pytest.mark.parametrize("name", ["calls", "latency", "cost"])
    @pytest.mark.parametrize("window", ["1h", "24h", "7d", "30d"])
    def test_each_chart_is_svg_with_figures_on_hover(self, fake_provider, staff, name, window):
        _calls(None, 3, fail=1)
        resp = staff.get(f"/admin/integrations/providercall/charts/{name}.svg?window={window}")
        assert resp.status_code == 200 and resp["Content-Type"].startswith("image/svg+xml")
        svg = resp.content.decode()
        assert svg.startswith("<svg") and "http://" not in svg.replace("http://www.w3.org/2000/svg", "")
        assert "<title>" in svg and ("acme" in svg or "failed" in svg)

    def test_an_empty_chart_says_so(self, staff):
        svg = staff.get("/admin/integrations/providercall/charts/latency.svg").content.decode()
        assert "No calls in this period" in svg


class TestFormats:
    @pytest.mark.parametrize(
        "value, text",
        [
            ("0.000035", "$0.00004"),
            ("0.0083", "$0.008"),
            ("0.0000096", "$0.00001"),
            ("0.30", "$0.30"),
            ("1234.5", "$1,234.50"),
            ("0", "$0.00"),
        ],
    )
    def test_usd(self, value, text):
        assert usd(Decimal(value)) == text

    def test_totals_are_cents(self):
        assert usd(Decimal("12.345678"), total=True) == "$12.35"
        assert usd(Decimal("0.0004"), total=True) == "< $0.01"

    @pytest.mark.parametrize(
        "amount, currency, text", [(4900, "usd", "$49.00"), (500, "jpy", "¥500"), (1050, "chf", "10.50 CHF")]
    )
    def test_minor_units(self, amount, currency, text):
        assert minor_units(amount, currency) == text

    def test_percentile_interpolates_inside_the_bucket(self):
        counts = [0] * 70
        counts[20] = 100  # every call between 2**(19/4) and 2**5 ms
        assert 26.9 < latency_percentile(counts, 50) < 32
        assert latency_percentile([0] * 70, 95) is None


class TestOtherAdmins:
    def test_invoice_amounts_are_currency_not_cents(self, staff, user):
        from payments.models import Invoice

        Invoice.objects.create(owner=user, amount=4900, currency="usd")
        Invoice.objects.create(owner=user, amount=500, currency="jpy")
        text = _text(staff.get("/admin/payments/invoice/"))
        assert "$49.00" in text and "¥500" in text and "4900" not in text

    def test_a_staff_action_on_rows_is_logged_per_row(self, staff, staff_user, user):
        from payments.models import Invoice

        invoice = Invoice.objects.create(owner=user, amount=4900, currency="usd")
        staff.post(
            "/admin/payments/invoice/", {"action": "void_invoices", "_selected_action": [invoice.pk]}, follow=True
        )
        invoice.refresh_from_db()
        assert invoice.status == "void"
        entry = LogEntry.objects.get(object_id=str(invoice.pk))
        assert entry.user == staff_user and entry.change_message.startswith("Void selected invoices")

    def test_ai_usage_has_totals_and_dollar_costs(self, staff, user):
        from ai.models import AiUsageMonthly

        month = timezone.now().date().replace(day=1)
        for model, cost in [("gpt-4o-mini", "0.000035"), ("gpt-4o", "1.25")]:
            AiUsageMonthly.objects.create(
                owner=user, month=month, provider="openai", model=model, requests=2, input_tokens=100, cost_usd=cost
            )
        text = _text(staff.get("/admin/ai/aiusagemonthly/"))
        assert "Totals of the rows selected by the filters" in text
        assert "$1.25" in text and "$0.00004" in text and "200" in text  # 2 x 100 input tokens


class TestSeedDemo:
    def test_it_refuses_when_debug_is_off(self, settings):
        from django.core.management import CommandError, call_command

        settings.DEBUG = False
        with pytest.raises(CommandError, match="DEBUG"):
            call_command("seed_demo")
        assert not ProviderCall.objects.exists()

    def test_it_fills_every_part_of_the_console_once(self, settings, staff):
        from io import StringIO

        from django.core.management import CommandError, call_command

        settings.DEBUG = True
        out, err = StringIO(), StringIO()
        call_command("seed_demo", "--calls", "300", stdout=out, stderr=err)
        assert err.getvalue() == ""  # every app's demo rows were made
        assert ProviderCall.objects.count() == 300
        assert ProviderRollup.objects.values("provider").distinct().count() >= 5
        days = {c.date() for c in ProviderCall.objects.values_list("created_at", flat=True)}
        assert len(days) > 10  # spread over the month, not all now
        rolled = sum(ProviderRollup.objects.values_list("calls", flat=True))
        assert rolled == 300 and UsageRollup.objects.exists()
        assert WebhookEvent.objects.filter(status="failed").exists()
        assert Alert.objects.filter(resolved_at__isnull=True).count() >= 3
        assert "Failed webhooks" in _text(staff.get("/admin/?window=30d"))
        with pytest.raises(CommandError, match="already"):
            call_command("seed_demo", "--calls", "10", stdout=out)


def test_a_long_error_is_clipped_in_lists_and_whole_on_hover_escaped():
    from integrations.admin_format import clipped

    text = "<b>Stripe</b> said " + "x" * 80
    cell = str(clipped(text))
    assert "&lt;b&gt;Stripe&lt;/b&gt;" in cell and "<b>" not in cell
    shown = cell.split(">", 1)[1].rsplit("<", 1)[0]
    assert shown.endswith("…") and len(shown.replace("&lt;", "<").replace("&gt;", ">")) == 60
    assert f'title="{text.replace("<", "&lt;").replace(">", "&gt;")}"' in cell
    assert clipped("") == "" and "short" in str(clipped("short"))
