"""The console's three-click paths in a real browser, asserting on what an operator sees."""

import datetime as dt
import random
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations import breaker
from integrations.alerts import alert_raise
from integrations.models import Alert, ProviderCall
from integrations.usage import call_record
from tests.integrations.factories import WebhookEventFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def _call(provider, *, outcome="ok", cost="0", code="", message="", owner=None, ago_minutes=5, latency=120.0):
    return call_record(
        ProviderCall(
            provider=provider,
            operation="sms.send" if provider == "twilio" else "send",
            owner=owner,
            outcome=outcome,
            http_status=200 if outcome == "ok" else 400,
            latency_ms=latency,
            cost_usd=Decimal(cost),
            error_code=code,
            error_message=message,
            units={"segments": 1} if outcome == "ok" else {},
            created_at=timezone.now() - dt.timedelta(minutes=ago_minutes),
        )
    )


def _no_trouble(page):
    assert page.outside_requests == [], f"the page reached outside the hub: {page.outside_requests}"
    assert page.js_errors == [], f"JavaScript errors: {page.js_errors}"


@pytest.fixture
def eager_tasks():
    from config.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def test_from_the_overview_to_a_failed_calls_error_in_three_clicks(page, staff_login, screenshot):
    from integrations.management.commands.seed_demo import Command

    owners = Command()._owners()
    Command()._calls(random.Random(7), owners, 400, 30, timezone.now())  # a month of varied traffic for the charts
    for _ in range(6):
        _call("twilio", cost="0.0083")
    _call("twilio", outcome="error", code="21610", message="Attempt to send to unsubscribed recipient", ago_minutes=1)
    staff_login()

    twilio = page.locator('tr[data-provider="twilio"]')
    assert "Twilio" in twilio.inner_text()
    assert re.search(r"\d+ ms", twilio.locator("td").nth(4).inner_text())  # p95 in ms, not a bucket bound
    screenshot(page, "overview")
    assert page.get_by_text("Calls and failures, last 24 h").count() >= 1

    twilio.locator("td").nth(1).get_by_role("link").click()  # 1: the failure count
    page.wait_for_url(re.compile(r"outcome=failed"))
    page.wait_for_load_state("load")
    assert "21610" in page.inner_text("#result_list")
    screenshot(page, "calls")
    # Every column fits at 1280 px: neither the page nor the list scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.evaluate("(r => r.scrollWidth <= r.clientWidth)(document.querySelector('.results'))")
    assert page.locator("#result_list thead th").last.bounding_box()["x"] < 1280
    page.locator("#result_list tbody tr").filter(has_text="21610").first.locator("th a, td a").first.click()  # 2
    page.wait_for_url(re.compile(r"/providercall/\d+/change/"))
    page.wait_for_load_state("load")
    body = page.inner_text("#content")
    assert "Attempt to send to unsubscribed recipient" in body
    assert "The recipient unsubscribed (replied STOP)" in body  # the vendor's meaning of 21610
    assert page.locator('input[name="_save"]').count() == 0  # the call log is read-only
    _no_trouble(page)


def test_replay_a_failed_webhook_from_its_page_and_its_alert_is_resolved(page, staff_login, eager_tasks, monkeypatch):
    from integrations.webhooks.registry import HANDLERS

    event = WebhookEventFactory(
        event_id="evt_browser_1", status="failed", attempts=5, last_error="KeyError: 'customer'", next_attempt_at=None
    )
    alert = alert_raise(
        kind=Alert.Kind.WEBHOOK_FAILED,
        provider="hubtest",
        severity=Alert.Severity.CRITICAL,
        message="Webhook hubtest thing.updated evt_browser_1 failed after 5 attempt(s)",
        dedupe_key="webhook_failed:hubtest:thing.updated",
    )
    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), lambda e: None)  # the cause is fixed
    staff_login()

    page.get_by_role(
        "link", name="hubtest thing.updated evt_browser_1", exact=True
    ).click()  # 1: from "Failed webhooks"
    assert "KeyError: 'customer'" in page.inner_text("#content")
    page.get_by_role("button", name="Replay").click()  # 2
    assert "Replayed: the event was processed." in page.inner_text("ul.messagelist")
    page.get_by_role("link", name="Open alerts").click()  # 3
    page.wait_for_url(re.compile(r"/alert/\?state=open"))
    page.wait_for_load_state("load")
    assert "evt_browser_1" not in page.inner_text("#content")
    page.goto(f"{page.base}/admin/integrations/alert/{alert.pk}/change/")
    assert "resolved" in page.inner_text("#content")
    event.refresh_from_db()
    assert event.status == "processed"
    _no_trouble(page)


def test_close_an_open_circuit(page, staff_login, fake_provider):
    breaker.trip("acme")
    staff_login()
    row = page.locator('tr[data-provider="acme"]')
    assert "Open" in row.locator(".console-circuit").inner_text()
    row.get_by_role("button", name="Close").click()
    assert "Closed the circuit for acme." in page.inner_text("ul.messagelist")
    assert "Closed" in page.locator('tr[data-provider="acme"] .console-circuit').inner_text()
    assert breaker.state("acme") == "closed"
    assert "Circuit acme" in page.inner_text("#recent-actions-module")  # who did what
    _no_trouble(page)


def test_read_this_months_total_on_the_money_page(page, staff_login, screenshot, user):
    from django.db.models import Sum

    from integrations.admin_format import usd
    from integrations.management.commands.seed_demo import Command
    from integrations.models import Budget
    from integrations.usage import month_start

    owners = Command()._owners()
    Command()._calls(random.Random(3), owners, 400, 45, timezone.now())
    Budget.objects.create(provider="twilio", monthly_limit_usd=Decimal("20.00"))
    for _ in range(3):
        _call("twilio", cost="1.50", owner=user, ago_minutes=1)
    expected = ProviderCall.objects.filter(created_at__gte=month_start()).aggregate(s=Sum("cost_usd"))["s"]
    staff_login()
    page.get_by_role("link", name="Money", exact=True).click()
    total = page.inner_text("#money-total")
    assert "This month so far" in total and usd(expected, total=True) in total  # e.g. "$12.34", to the cent
    assert "Twilio" in page.inner_text("#money-providers") and "$20.00" in page.inner_text("#money-providers")
    assert user.username in page.inner_text("#money-top")
    screenshot(page, "money")
    page.locator("#money-top").get_by_role("link", name=user.username).click()  # a spender's calls
    page.wait_for_url(re.compile(r"owner__id__exact="))
    page.wait_for_load_state("load")
    assert page.locator("#result_list tbody tr").count() == 3
    _no_trouble(page)


@pytest.mark.parametrize(
    "path, expect", [("/api/docs/", "/api/v1/integrations/usage/"), ("/api/redoc/", "Integration Hub API")]
)
def test_api_docs_render_with_no_network(page, path, expect, transactional_db):
    page.goto(f"{page.base}{path}")
    page.get_by_text(expect).first.wait_for()  # the page's default timeout: generous on a busy machine
    # ReDoc's bundle always asks its CDN for a footer logo; the page's policy refuses it (reported on the console).
    page.js_errors[:] = [e for e in page.js_errors if "cdn.redoc.ly" not in e]
    _no_trouble(page)


def test_every_apps_admin_shows_times_in_the_readers_zone_with_utc_on_hover(page, staff_login):
    from documents.models import Document
    from tests.documents.factories import DocumentFactory

    document = DocumentFactory()
    Document.objects.filter(pk=document.pk).update(created_at=dt.datetime(2026, 3, 1, 12, 34, 56, tzinfo=dt.UTC))
    staff_login()
    page.goto(f"{page.base}/admin/documents/document/")
    cell = page.locator("#result_list td.field-created_at time")
    assert "13:34:56" in cell.inner_text()  # the page's zone is Europe/Paris: UTC+1 on 1 March
    assert cell.get_attribute("title") == "2026-03-01 12:34:56 UTC"
    _no_trouble(page)
    # The detail page too: its read-only times (the document's, and its versions' in the inline).
    page.goto(f"{page.base}/admin/documents/document/{document.pk}/change/")
    detail = page.locator(".form-row.field-created_at time")
    assert "13:34:56" in detail.inner_text()
    assert detail.get_attribute("title") == "2026-03-01 12:34:56 UTC"
    _no_trouble(page)


def test_every_admin_list_fits_1280_px_beside_its_filters_with_clipped_values_whole_on_hover(
    page, staff_login, settings
):
    """#15 point 6 for every list, with the demo seeder's realistic rows (long names, errors, ids)."""
    from django.contrib import admin
    from django.urls import reverse

    from tests.integrations.test_admin_times import _seeded_admin

    _seeded_admin(settings)
    staff_login()
    wide, clipped = {}, 0
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        page.goto(f"{page.base}{url}")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        results = page.evaluate(
            "(r => r ? [r.scrollWidth, r.clientWidth] : [0, 0])(document.querySelector('.results'))"
        )
        if page_width > 1280 or results[0] > results[1]:
            wide[url] = (page_width, results)
        cut = page.evaluate(
            "Array.from(document.querySelectorAll('#result_list tbody td'))"
            ".filter(td => td.scrollWidth > td.clientWidth)"
            ".map(td => [td.title, td.textContent.trim(), !!td.querySelector('time')])"
        )
        assert all(title == text for title, text, _ in cut), cut  # the full text on hover
        assert not any(has_time for _, _, has_time in cut), cut  # a time is never cut
        clipped += len(cut)
        _no_trouble(page)
    assert wide == {}, f"lists that scroll sideways at 1280 px: {wide}"
    assert clipped > 0  # the seeded rows do have values longer than their column


def test_give_an_unattributed_reply_to_the_user_who_talks_with_its_sender(page, staff_login, screenshot):
    from messaging.models import Conversation
    from tests.factories import UserFactory
    from tests.messaging.factories import SmsFactory

    remote = "+15005550006"
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    for owner in (alice, bob):
        Conversation.objects.create(owner=owner, remote_number=remote, last_message_at=timezone.now())
    reply = SmsFactory(
        owner=None,
        direction="inbound",
        from_number=remote,
        to_number="+14155550100",
        body="Running late, sorry",
        status="unattributed",
        error_message=f"2 users have a conversation with {remote}; staff must tell whose reply this is.",
    )
    staff_login()

    page.goto(f"{page.base}/admin/messaging/smsmessage/?status__exact=unattributed")
    page.locator("#result_list tbody tr").filter(has_text=remote).locator("input.action-select").check()
    page.select_option("select[name=action]", "assign_unattributed")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state("load")  # console.js has shown the times in the reader's zone
    candidates = page.locator("#assign-candidates")
    assert "alice" in candidates.inner_text() and "bob" in candidates.inner_text()
    received = page.locator("#assign-messages time")  # times in the reader's zone, UTC on hover, as on every page
    assert received.get_attribute("title") == f"{reply.created_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
    assert "UTC" not in received.inner_text()
    screenshot(page, "sms-assign-unattributed")
    candidates.get_by_label(re.compile(r"^\s*bob")).check()
    page.get_by_role("button", name="Assign").click()
    assert "assigned to bob" in page.inner_text("ul.messagelist")
    reply.refresh_from_db()
    assert (reply.owner, reply.status, reply.conversation.owner) == (bob, "received", bob)
    _no_trouble(page)
