"""Retention: each policy removes only what is past its days, in batches, and leaves a record of what it removed."""

import datetime as dt
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from ai.models import AiRequest
from integrations.models import ProviderCall, RetentionRun, UsageRollup, WebhookEvent
from integrations.retention import POLICIES, retention_enforce, retention_enforce_all, retention_last_runs
from integrations.usage import usage_for_owner
from tests.factories import UserFactory
from tests.integrations.factories import WebhookEventFactory
from tests.messaging.factories import SmsFactory

pytestmark = pytest.mark.django_db
NOW = timezone.now()
OLD = NOW - dt.timedelta(days=100)


def aged(model, rows, field, when=OLD):
    model.objects.filter(pk__in=[r.pk for r in rows]).update(**{field: when})


@override_settings(RETENTION_WEBHOOK_PAYLOAD_DAYS=30, RETENTION_BATCH_SIZE=2)
def test_webhook_payloads_of_finished_events_are_cleared_and_the_rows_kept():
    done = WebhookEventFactory.create_batch(3, status=WebhookEvent.Status.PROCESSED)
    failed = WebhookEventFactory(status=WebhookEvent.Status.FAILED)  # still needs a replay: kept whole
    recent = WebhookEventFactory(status=WebhookEvent.Status.PROCESSED)
    aged(WebhookEvent, [*done, failed], "received_at")

    run = retention_enforce(policy=POLICIES["webhook_payloads"], now=NOW)

    assert (run.removed, run.batches) == (3, 2)  # batches of at most 2 rows
    assert WebhookEvent.objects.count() == 5  # de-duplication still works
    assert list(WebhookEvent.objects.filter(pk__in=[e.pk for e in done]).values_list("payload", flat=True)) == [{}] * 3
    failed.refresh_from_db()
    recent.refresh_from_db()
    assert failed.payload and recent.payload


@override_settings(RETENTION_CALL_LOG_DAYS=90)
def test_the_call_log_detail_goes_and_the_rollups_keep_the_totals(fake_provider):
    from integrations import gateway

    user = UserFactory()
    for _ in range(3):
        gateway.call(fake_provider, "send", lambda: None, owner=user, meter=lambda _: {"units": {"segments": 2}})
    before = usage_for_owner(owner=user)
    ProviderCall.objects.update(created_at=OLD)
    UsageRollup.objects.update(hour=NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0))

    run = retention_enforce(policy=POLICIES["call_log"], now=NOW)

    assert run.removed == 3 and not ProviderCall.objects.exists()
    after = usage_for_owner(owner=user)
    assert after["total_cost_usd"] == before["total_cost_usd"] > Decimal(0)
    assert after["providers"][0]["calls"] == 3


@override_settings(RETENTION_AI_PROMPT_DAYS=30)
def test_ai_prompts_and_answers_are_cleared_and_the_cost_kept():
    user = UserFactory()
    old = AiRequest.objects.create(
        owner=user, outcome="ok", prompt=[{"role": "user", "content": "my secret"}], response_text="hi", cost_usd=1
    )
    new = AiRequest.objects.create(
        owner=user, outcome="ok", prompt=[{"role": "user", "content": "x"}], response_text="y"
    )
    aged(AiRequest, [old], "created_at")
    assert retention_enforce(policy=POLICIES["ai_prompts"], now=NOW).removed == 1
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.prompt, old.response_text, old.cost_usd) == (None, "", Decimal("1"))
    assert new.prompt and new.response_text


@override_settings(RETENTION_SMS_BODY_DAYS=90)
def test_sms_bodies_of_finished_messages_are_cleared():
    delivered = SmsFactory(status="delivered")
    queued = SmsFactory(status="queued")  # not sent yet: its body is still needed
    aged(type(delivered), [delivered, queued], "created_at")
    assert retention_enforce(policy=POLICIES["sms_bodies"], now=NOW).removed == 1
    delivered.refresh_from_db()
    queued.refresh_from_db()
    assert (delivered.body, queued.body) == ("", "Your table is ready.")


@override_settings(RETENTION_SMS_BODY_DAYS=90, RETENTION_BATCH_SIZE=1)
def test_the_text_and_media_links_twilio_sent_with_an_inbound_sms_are_cleared_with_its_body():
    # An inbound message keeps Twilio's webhook payload in raw: the body and the media's links were in it for good.
    payload = {"MessageSid": "MM1", "From": "+15005550006", "Body": "My card is 4242", "NumMedia": "1"}
    media = {"MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"}
    inbound = SmsFactory(
        direction="inbound", status="received", body="My card is 4242", raw={**payload, **media}, num_media=1
    )
    picture_only = SmsFactory(direction="inbound", status="received", body="", raw={**payload, "Body": "", **media})
    aged(type(inbound), [inbound, picture_only], "created_at")
    assert retention_enforce(policy=POLICIES["sms_bodies"], now=NOW).removed == 2
    kept = {"MessageSid": "MM1", "From": "+15005550006", "NumMedia": "1"}
    for sms in (inbound, picture_only):
        sms.refresh_from_db()
        assert (sms.body, sms.raw) == ("", kept)
    assert inbound.num_media == 1
    assert retention_enforce(policy=POLICIES["sms_bodies"], now=NOW).removed == 0


@override_settings(RETENTION_CALL_LOG_DAYS=0)
def test_zero_days_keeps_forever_and_says_so():
    ProviderCall.objects.create(provider="stripe", operation="x", outcome="ok", created_at=OLD)
    run = retention_enforce(policy=POLICIES["call_log"], now=NOW)
    assert run.removed == 0 and "kept forever" in run.error and ProviderCall.objects.count() == 1


def test_the_nightly_run_records_every_policy_and_the_console_shows_the_last():
    removed = retention_enforce_all(now=NOW)
    assert set(removed) == {"webhook_payloads", "call_log", "ai_prompts", "sms_bodies"}
    assert RetentionRun.objects.count() == 4
    last = retention_last_runs()
    assert set(last) == set(removed) and all(r.finished_at for r in last.values())


def test_a_policy_that_fails_is_recorded_and_the_others_still_run(monkeypatch):
    from integrations import retention

    def broken(*, cutoff, batch_size):
        raise RuntimeError("lock timeout")

    monkeypatch.setitem(retention.POLICIES, "call_log", retention.Policy("call_log", "RETENTION_CALL_LOG_DAYS", broken))
    retention_enforce_all(now=NOW)
    assert "lock timeout" in RetentionRun.objects.get(policy="call_log").error
    assert RetentionRun.objects.filter(error="").count() == 3


def test_the_retention_page_lists_runs(admin_client):
    retention_enforce_all(now=NOW)
    page = admin_client.get("/admin/integrations/retentionrun/")
    assert page.status_code == 200 and b"webhook_payloads" in page.content
