"""Retention: each kind of data is kept for its setting's days, then removed by a nightly task in small batches.

| policy            | what goes                                              | kept                          | setting                        |
|-------------------|--------------------------------------------------------|-------------------------------|--------------------------------|
| webhook_payloads  | payload and headers of processed / ignored events      | the row (de-duplication, log) | RETENTION_WEBHOOK_PAYLOAD_DAYS |
| call_log          | ProviderCall rows (one per attempt)                    | hourly roll-ups (usage, cost) | RETENTION_CALL_LOG_DAYS        |
| ai_prompts        | AiRequest prompt and answer text                       | the row: model, tokens, cost  | RETENTION_AI_PROMPT_DAYS       |
| sms_bodies        | SmsMessage body (and an inbound one's Body, MediaUrlN  | the row: numbers, status, cost| RETENTION_SMS_BODY_DAYS        |
|                   | in raw) of messages in a final state                   |                               |                                |

Each batch is one short statement on at most RETENTION_BATCH_SIZE primary keys
(chosen first, then updated or deleted by key), so no lock is held for long
and the web tier never waits on a retention run. Every run of every policy
leaves a RetentionRun row: the console's "Retention" list shows what each
policy removed last night. Failed and unfinished rows are never touched.

Another app adds its own policy with (a days setting of its own; 0 keeps forever):

    @retention_policy("drafts", setting="RETENTION_DRAFT_DAYS")
    def drafts_expire(*, cutoff, batch_size):  # -> rows removed in ONE batch (0 when done)
        ...
"""

import datetime as dt
import logging
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import ProviderCall, RetentionRun, WebhookEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    name: str
    setting: str
    batch: object  # batch(*, cutoff, batch_size) -> rows removed in one batch


POLICIES = {}


def retention_policy(name, *, setting):
    def register(fn):
        POLICIES[name] = Policy(name, setting, fn)
        return fn

    return register


def _keys(queryset, batch_size):
    return list(queryset.order_by().values_list("pk", flat=True)[:batch_size])


@retention_policy("webhook_payloads", setting="RETENTION_WEBHOOK_PAYLOAD_DAYS")
def webhook_payloads(*, cutoff, batch_size):
    done = [WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]
    keys = _keys(
        WebhookEvent.objects.filter(status__in=done, received_at__lt=cutoff).exclude(payload={}, headers={}),
        batch_size,
    )
    return WebhookEvent.objects.filter(pk__in=keys).update(payload={}, headers={}) if keys else 0


@retention_policy("call_log", setting="RETENTION_CALL_LOG_DAYS")
def call_log(*, cutoff, batch_size):
    # The hourly roll-ups (UsageRollup, ProviderRollup) already hold every call's counts, units and
    # cost: usage, budgets and the console's charts are unchanged when the detail goes.
    keys = _keys(ProviderCall.objects.filter(created_at__lt=cutoff), batch_size)
    return ProviderCall.objects.filter(pk__in=keys).delete()[0] if keys else 0


@retention_policy("ai_prompts", setting="RETENTION_AI_PROMPT_DAYS")
def ai_prompts(*, cutoff, batch_size):
    if not apps.is_installed("ai"):
        return 0
    AiRequest = apps.get_model("ai", "AiRequest")
    stale = AiRequest.objects.filter(created_at__lt=cutoff).exclude(prompt__isnull=True, response_text="")
    keys = _keys(stale, batch_size)
    return AiRequest.objects.filter(pk__in=keys).update(prompt=None, response_text="") if keys else 0


@retention_policy("sms_bodies", setting="RETENTION_SMS_BODY_DAYS")
def sms_bodies(*, cutoff, batch_size):
    if not apps.is_installed("messaging"):
        return 0
    SmsMessage = apps.get_model("messaging", "SmsMessage")
    # An inbound message's raw is Twilio's webhook payload: its Body and its media's links (MediaUrl0..) go too.
    with_text = ~Q(body="") | Q(raw__has_key="Body") | Q(raw__has_key="MediaUrl0")
    stale = SmsMessage.objects.filter(with_text, created_at__lt=cutoff, status__in=SmsMessage.FINAL)
    keys = _keys(stale, batch_size)
    rows = list(SmsMessage.objects.filter(pk__in=keys).only("pk", "raw"))
    for sms in rows:
        sms.body = ""
        sms.raw = {k: v for k, v in (sms.raw or {}).items() if k != "Body" and not k.startswith("MediaUrl")}
    return SmsMessage.objects.bulk_update(rows, ["body", "raw"]) if rows else 0


def retention_enforce(*, policy, now=None, max_batches=None):
    """Run one policy to the end (or max_batches); its RetentionRun row."""
    now = now or timezone.now()
    days = getattr(settings, policy.setting, 0) or 0
    run = RetentionRun.objects.create(policy=policy.name, started_at=now)
    if days <= 0:
        RetentionRun.objects.filter(pk=run.pk).update(finished_at=timezone.now(), error="kept forever (0 days)")
        run.refresh_from_db()
        return run
    cutoff = now - dt.timedelta(days=days)
    removed = batches = 0
    error = ""
    try:
        while max_batches is None or batches < max_batches:
            count = policy.batch(cutoff=cutoff, batch_size=settings.RETENTION_BATCH_SIZE)
            if not count:
                break
            removed += count
            batches += 1
    except Exception as exc:  # noqa: BLE001 - recorded on the run; the next policy still runs
        logger.exception("retention policy failed", extra={"policy": policy.name})
        error = f"{type(exc).__name__}: {exc}"[:500]
    RetentionRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(), cutoff=cutoff, removed=removed, batches=batches, error=error
    )
    run.refresh_from_db()
    logger.info("retention enforced", extra={"policy": policy.name, "removed": removed, "batches": batches})
    return run


def retention_enforce_all(*, now=None):
    """Every registered policy, one after the other: {policy: removed}."""
    return {name: retention_enforce(policy=policy, now=now).removed for name, policy in sorted(POLICIES.items())}


def retention_last_runs():
    """The newest run of each policy (the console's summary)."""
    latest = {}
    for run in RetentionRun.objects.order_by("policy", "-started_at").distinct("policy") if _distinct_on() else []:
        latest[run.policy] = run
    if not latest:
        for name in POLICIES:
            run = RetentionRun.objects.filter(policy=name).order_by("-started_at").first()
            if run:
                latest[name] = run
    return latest


def _distinct_on():
    from django.db import connection

    return connection.vendor == "postgresql"
