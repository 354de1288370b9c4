"""The figures beat checks every ALERT_EVALUATE_INTERVAL_SECONDS, and the alerts they raise and resolve.

Each check returns the breaches it sees now; every alert it owns has a
dedupe key under `threshold:`, so once a figure is back under its threshold
the evaluation resolves the alert (and the channels get the resolution).
Budgets at 80 % / 100 % are checked as each priced call is recorded
(integrations.usage.budget_check); the projection is checked here, and so is
whether a budget alert is back under (`budget_alerts_settle`).

| check                  | figure                                                     | setting                           |
|------------------------|------------------------------------------------------------|-----------------------------------|
| provider error rate    | failed / all calls per provider in the window              | ALERT_ERROR_RATE, ALERT_MIN_CALLS |
| 429 rate               | rate-limited / all calls per provider in the window        | ALERT_429_RATE, ALERT_MIN_CALLS   |
| webhook signatures     | deliveries refused 403 per provider in the window          | ALERT_WEBHOOK_SIGNATURE_FAILURES  |
| OAuth refresh failures | failed token.refresh calls per provider in the window      | ALERT_OAUTH_REFRESH_FAILURES      |
| queue depth / age      | messages waiting per Celery queue, age of the oldest       | ALERT_QUEUE_DEPTH, ..._AGE_SECONDS|
| worker heartbeat       | newest WorkerHeartbeat older than HEARTBEAT_MAX_AGE_SECONDS| HEARTBEAT_MAX_AGE_SECONDS         |
| cost projection        | month's spend so far / share of month elapsed vs. Budget   | ALERT_BUDGET_PROJECTION_MIN_ELAPSED |
"""

import datetime as dt
import json
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from ..alerts import alert_raise, alert_resolve
from ..models import Alert, Budget, ProviderCall, UsageRollup, WorkerHeartbeat
from . import counters

logger = logging.getLogger(__name__)

PREFIX = "threshold:"
# Stamped on every task message as it is published (integrations.signals): the queue-age check reads it.
ENQUEUED_AT_HEADER = "hub_enqueued_at"


@dataclass(frozen=True)
class Breach:
    key: str
    kind: str
    message: str
    provider: str = ""
    severity: str = Alert.Severity.WARNING


def _window(now):
    return now - dt.timedelta(minutes=settings.ALERT_WINDOW_MINUTES)


def call_rates(now):
    failed = Q(outcome__in=[ProviderCall.Outcome.ERROR, ProviderCall.Outcome.TIMEOUT])
    rows = (
        ProviderCall.objects.filter(created_at__gte=_window(now))
        .exclude(outcome=ProviderCall.Outcome.CIRCUIT_OPEN)
        .values("provider")
        .annotate(
            calls=Count("id"),
            failed=Count("id", filter=failed),
            limited=Count("id", filter=Q(outcome=ProviderCall.Outcome.RATE_LIMITED)),
        )
    )
    minutes = settings.ALERT_WINDOW_MINUTES
    for row in rows:
        calls, provider = row["calls"], row["provider"]
        if calls < settings.ALERT_MIN_CALLS:
            continue
        if row["failed"] / calls >= settings.ALERT_ERROR_RATE:
            yield Breach(
                f"{PREFIX}error_rate:{provider}",
                Alert.Kind.PROVIDER_FAILURE_RATE,
                f"{provider}: {row['failed']} of {calls} calls failed in the last {minutes} min "
                f"({row['failed'] / calls:.0%}, threshold {settings.ALERT_ERROR_RATE:.0%}).",
                provider,
                Alert.Severity.CRITICAL,
            )
        if row["limited"] / calls >= settings.ALERT_429_RATE:
            yield Breach(
                f"{PREFIX}rate_limited:{provider}",
                Alert.Kind.RATE_LIMITED,
                f"{provider}: {row['limited']} of {calls} calls were rate limited (429) in the last {minutes} min "
                f"({row['limited'] / calls:.0%}, threshold {settings.ALERT_429_RATE:.0%}).",
                provider,
            )


def webhook_signatures(now):
    from ..registry import PROVIDERS
    from ..webhooks.registry import VERIFIERS

    minutes = settings.ALERT_WINDOW_MINUTES
    for provider in sorted(set(PROVIDERS) | set(VERIFIERS)):
        refused = counters.signature_failures(provider=provider, minutes=minutes, now=now.timestamp())
        if refused >= settings.ALERT_WEBHOOK_SIGNATURE_FAILURES:
            yield Breach(
                f"{PREFIX}webhook_signature:{provider}",
                Alert.Kind.WEBHOOK_SIGNATURE,
                f"{provider}: {refused} webhook deliveries refused for a bad, missing or stale signature in the "
                f"last {minutes} min. A spike may be an attack, or a rotated secret the hub does not have yet.",
                provider,
                Alert.Severity.CRITICAL,
            )


def oauth_refresh(now):
    rows = (
        ProviderCall.objects.filter(created_at__gte=_window(now), operation="token.refresh")
        .exclude(outcome=ProviderCall.Outcome.OK)
        .values("provider")
        .annotate(n=Count("id"))
    )
    for row in rows:
        if row["n"] >= settings.ALERT_OAUTH_REFRESH_FAILURES:
            yield Breach(
                f"{PREFIX}oauth_refresh:{row['provider']}",
                Alert.Kind.OAUTH_REFRESH,
                f"{row['provider']}: {row['n']} OAuth token refreshes failed in the last "
                f"{settings.ALERT_WINDOW_MINUTES} min; users' mail and calendars stop syncing.",
                row["provider"],
            )


def queue_figures(now):
    """{queue: (depth, oldest age in seconds or None)} from the Redis broker; {} for any other broker."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return {}
    import redis

    from ..task_base import redis_queue_lists

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    figures = {}
    try:
        for queue in settings.CELERY_TASK_QUEUES_NAMES:
            depth, ages = 0, []
            # A queue is one list per priority step (kombu's Redis transport; task_base.BACKGROUND_PRIORITY):
            # a backlog of low-priority work waits in its own list and must count too.
            for key in redis_queue_lists(queue):
                waiting = client.llen(key)
                if not waiting:
                    continue
                depth += waiting
                # kombu LPUSHes and BRPOPs: the oldest message is the list's last element.
                raw = client.lindex(key, -1)
                try:
                    stamped = json.loads(raw)["headers"].get(ENQUEUED_AT_HEADER)
                    if stamped:
                        ages.append(max(0.0, now.timestamp() - float(stamped)))
                except (TypeError, ValueError, KeyError):
                    pass
            figures[queue] = (depth, max(ages) if ages else None)
    finally:
        client.close()
    return figures


def queues(now):
    try:
        figures = queue_figures(now)
    except Exception as exc:
        # A broker we cannot read is /readyz's business: say so, and let the evaluation count this check
        # as not run (depth unknown is not depth back under: its open alerts stay open).
        logger.warning("queue figures unavailable", extra={"error": str(exc)[:200]})
        raise
    for queue, (depth, age) in sorted(figures.items()):
        if depth >= settings.ALERT_QUEUE_DEPTH:
            yield Breach(
                f"{PREFIX}queue_depth:{queue}",
                Alert.Kind.QUEUE_BACKLOG,
                f"Queue {queue!r} holds {depth} tasks (threshold {settings.ALERT_QUEUE_DEPTH}): add workers for it.",
            )
        if age is not None and age >= settings.ALERT_QUEUE_AGE_SECONDS:
            yield Breach(
                f"{PREFIX}queue_age:{queue}",
                Alert.Kind.QUEUE_BACKLOG,
                f"The oldest task in queue {queue!r} has waited {age:.0f} s "
                f"(threshold {settings.ALERT_QUEUE_AGE_SECONDS} s): no worker is taking it.",
                severity=Alert.Severity.CRITICAL,
            )


def heartbeat(now):
    newest = WorkerHeartbeat.objects.aggregate(m=Max("seen_at"))["m"]
    limit = settings.HEARTBEAT_MAX_AGE_SECONDS
    if newest is None or (now - newest).total_seconds() > limit:
        seen = f"last seen {newest:%Y-%m-%d %H:%M:%S} UTC" if newest else "never seen"
        yield Breach(
            f"{PREFIX}worker_heartbeat",
            Alert.Kind.WORKER_DOWN,
            f"No Celery worker has answered for over {limit} s ({seen}): nothing is being sent or processed.",
            severity=Alert.Severity.CRITICAL,
        )


def _month_bounds(now):
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def _month_spend(provider, owner_id, now):
    rows = UsageRollup.objects.filter(provider=provider, hour__gte=_month_bounds(now)[0])
    if owner_id is not None:
        rows = rows.filter(owner_id=owner_id)
    return rows.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)


def cost_projection(now):
    start, end = _month_bounds(now)
    elapsed = (now - start) / (end - start)
    if elapsed < settings.ALERT_BUDGET_PROJECTION_MIN_ELAPSED:
        return  # too early in the month for a projection to mean anything
    for budget in Budget.objects.all():
        limit = Decimal(budget.monthly_limit_usd)
        if limit <= 0:
            continue
        spent = _month_spend(budget.provider, budget.owner_id, now)
        projected = spent / Decimal(str(elapsed))
        if projected > limit:
            who = f"owner {budget.owner_id}" if budget.owner_id else "all owners"
            yield Breach(
                f"{PREFIX}cost_projection:{budget.provider}:{budget.owner_id}:{now:%Y-%m}",
                Alert.Kind.COST_PROJECTION,
                f"{budget.provider} spend for {who} is on course for ${projected:.2f} in {now:%Y-%m} "
                f"(${spent:.2f} so far, budget ${limit:.2f}).",
                budget.provider,
            )


CHECKS = [call_rates, webhook_signatures, oauth_refresh, queues, heartbeat, cost_projection]
# The alerts each check owns (dedupe keys after PREFIX): a check that could not run says nothing about them.
OWNS = {
    "call_rates": ("error_rate:", "rate_limited:"),
    "webhook_signatures": ("webhook_signature:",),
    "oauth_refresh": ("oauth_refresh:",),
    "queues": ("queue_depth:", "queue_age:"),
    "heartbeat": ("worker_heartbeat",),
    "cost_projection": ("cost_projection:",),
}


def budget_alerts_settle(now):
    """Resolve the budget alerts whose figure is back under: raised as calls are recorded
    (`budget:<provider>:<owner>:<YYYY-MM>:<pct>`, `ai_budget:<owner>:<YYYY-MM>:<pct>`), nothing else closes them.

    An alert of a month that is over is resolved (this month's spend starts again from nothing); a Budget alert
    of this month, once staff removed the Budget or raised it above the spend. Returns how many were resolved.
    """
    month = f"{now:%Y-%m}"
    open_alerts = Alert.objects.filter(kind=Alert.Kind.BUDGET_THRESHOLD, resolved_at__isnull=True).filter(
        Q(dedupe_key__startswith="budget:") | Q(dedupe_key__startswith="ai_budget:")
    )
    resolved = 0
    for alert in open_alerts:
        parts = alert.dedupe_key.split(":")
        if parts[-2] != month:
            resolved += bool(alert_resolve(alert=alert).resolved_at)
            continue
        if parts[0] != "budget" or len(parts) != 5:
            continue  # an AI budget is the ai app's: its alert lasts the month
        provider, owner, pct = parts[1], parts[2], parts[4]
        owner_id = None if owner == "None" else int(owner)
        budget = Budget.objects.filter(provider=provider, owner_id=owner_id).first()
        if budget is None or _month_spend(provider, owner_id, now) < Decimal(budget.monthly_limit_usd) * int(pct) / 100:
            resolved += bool(alert_resolve(alert=alert).resolved_at)
    return resolved


def thresholds_evaluate(*, now=None, checks=None):
    """Raise an alert for every breach; resolve this module's open alerts whose figure is back under."""
    now = now or timezone.now()
    breached, unknown = set(), []
    for check in checks or CHECKS:
        try:
            found = list(check(now))
        except Exception:  # noqa: BLE001 - one broken check must not silence the others
            logger.exception("threshold check failed", extra={"check": check.__name__})
            # Its figures are unknown, not back under: leave its open alerts (None: any alert, owner unknown).
            unknown.append(OWNS.get(check.__name__))
            continue
        for breach in found:
            breached.add(breach.key)
            alert_raise(
                kind=breach.kind,
                provider=breach.provider,
                severity=breach.severity,
                message=breach.message,
                dedupe_key=breach.key,
            )
    if checks is not None or None in unknown:
        return breached  # a partial run cannot tell which other figures are back under
    unknown = tuple(PREFIX + family for families in unknown for family in families)
    for alert in Alert.objects.filter(dedupe_key__startswith=PREFIX, resolved_at__isnull=True):
        if alert.dedupe_key not in breached and not (unknown and alert.dedupe_key.startswith(unknown)):
            alert_resolve(alert=alert)
    try:
        budget_alerts_settle(now)
    except Exception:  # noqa: BLE001 - the threshold alerts above are settled already
        logger.exception("budget alerts not settled")
    return breached
