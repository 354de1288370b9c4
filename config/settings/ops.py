"""Operations: /metrics access, Prometheus, Sentry, alert channels and thresholds, the audit archive,
webhook source checks, retention, and their beat schedule (README "Operations")."""

import ipaddress
import os

from django.core.exceptions import ImproperlyConfigured

from ._env import VAR_DIR, env

# /metrics answers a request that carries `Authorization: Bearer <METRICS_TOKEN>`
# or comes from one of METRICS_ALLOWED_NETWORKS (CIDRs, e.g. 10.0.0.0/8); with
# neither set it answers nobody. The client address is resolved as for login
# throttling (TRUSTED_PROXY_COUNT), so a proxy on localhost does not open it.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
for _network in METRICS_ALLOWED_NETWORKS:
    # Checked here, not on each scrape: a typo would otherwise answer every scrape with a 500 and a traceback.
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is not an IP address or CIDR network."
        ) from None

# Every web worker (and every Celery worker on the same host) writes its
# counters to files in this directory and /metrics adds them up; without it
# each worker would report only its own share. Empty turns it off. It must be
# in the environment before prometheus_client is first imported, which the
# settings are (Django loads them before any app).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
if PROMETHEUS_MULTIPROC_DIR:
    os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

# --- Sentry (opt-in) -------------------------------------------------------------
# Errors go to Sentry only when SENTRY_DSN is set. No personal data is sent
# (send_default_pii off, and config.sentry scrubs secrets from every event).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)

# --- Alert channels (integrations.alerting) -------------------------------------
# Where alerts go, besides the admin: channels from these settings plus those
# staff add in admin (AlertChannel). Each is skipped when empty.
# The name in every notice's subject, so several hubs can share one channel.
ALERT_HUB_NAME = env.str("ALERT_HUB_NAME", default="hub")
ALERT_EMAIL_TO = env.list("ALERT_EMAIL_TO", default=[])
ALERT_SLACK_WEBHOOK_URL = env.str("ALERT_SLACK_WEBHOOK_URL", default="")
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
# The signing secret of ALERT_WEBHOOK_URL (HMAC-SHA256 over "timestamp.body", header X-Hub-Signature: t=..,v1=..).
ALERT_WEBHOOK_SECRET = env.str("ALERT_WEBHOOK_SECRET", default="")
if ALERT_WEBHOOK_URL and not ALERT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET: receivers must be able to verify.")
# Least severity a settings channel is told about: info, warning or critical.
ALERT_MIN_SEVERITY = env.str("ALERT_MIN_SEVERITY", default="warning")
if ALERT_MIN_SEVERITY not in ("info", "warning", "critical"):
    raise ImproperlyConfigured("ALERT_MIN_SEVERITY must be info, warning or critical.")
# An alert still open, and not acknowledged, this many hours after the last notice is sent again as a reminder
# (0: never).
ALERT_REMINDER_HOURS = env.float("ALERT_REMINDER_HOURS", default=4.0)
# Attempts per delivery before it is left failed: the task retries with backoff (PROVIDER_RETRY of
# "email" / "alert_webhook"), and the evaluation task re-sends a delivery whose task was lost.
ALERT_DELIVERY_MAX_ATTEMPTS = env.int("ALERT_DELIVERY_MAX_ATTEMPTS", default=8)
ALERT_EVALUATE_INTERVAL_SECONDS = env.int("ALERT_EVALUATE_INTERVAL_SECONDS", default=60)

# Thresholds the beat task (integrations.alerting.thresholds) evaluates every interval;
# an alert it raised is resolved (and the resolution sent) once its figure is back under.
ALERT_WINDOW_MINUTES = env.int("ALERT_WINDOW_MINUTES", default=15)
ALERT_ERROR_RATE = env.float("ALERT_ERROR_RATE", default=0.25)
ALERT_429_RATE = env.float("ALERT_429_RATE", default=0.10)
ALERT_MIN_CALLS = env.int("ALERT_MIN_CALLS", default=20)
# Webhook deliveries refused for a bad or missing signature, per provider per window: a spike may be an attack.
ALERT_WEBHOOK_SIGNATURE_FAILURES = env.int("ALERT_WEBHOOK_SIGNATURE_FAILURES", default=20)
ALERT_OAUTH_REFRESH_FAILURES = env.int("ALERT_OAUTH_REFRESH_FAILURES", default=5)
ALERT_QUEUE_DEPTH = env.int("ALERT_QUEUE_DEPTH", default=1000)
ALERT_QUEUE_AGE_SECONDS = env.int("ALERT_QUEUE_AGE_SECONDS", default=300)
# Budgets alert at these percentages of the month's limit; the projection alerts when the month's
# spend so far, extrapolated to the whole month, exceeds the limit (once this share of it has passed).
ALERT_BUDGET_PROJECTION_MIN_ELAPSED = env.float("ALERT_BUDGET_PROJECTION_MIN_ELAPSED", default=0.1)

# --- Audit archive (integrations.audit.archive) -----------------------------------
# Each day's audit events, as gzip JSON lines, to s3://AUDIT_ARCHIVE_BUCKET/AUDIT_ARCHIVE_PREFIX/date=YYYY-MM-DD/.
AUDIT_ARCHIVE_BUCKET = env.str("AUDIT_ARCHIVE_BUCKET", default="")
AUDIT_ARCHIVE_PREFIX = env.str("AUDIT_ARCHIVE_PREFIX", default="audit").strip("/")
# Object Lock retention of each archive object, where the bucket has Object Lock enabled.
AUDIT_ARCHIVE_RETENTION_DAYS = env.int("AUDIT_ARCHIVE_RETENTION_DAYS", default=7 * 365 + 2)
# GOVERNANCE by default: the hub's own credentials (without s3:BypassGovernanceRetention) can
# neither delete nor shorten it, yet a separate break-glass role can still remove an object a
# court or an erasure order says must go. COMPLIANCE when a regulator demands WORM storage
# that nobody, not even the account's root user, can remove before the date.
AUDIT_ARCHIVE_LOCK_MODE = env.str("AUDIT_ARCHIVE_LOCK_MODE", default="GOVERNANCE")
if AUDIT_ARCHIVE_LOCK_MODE not in ("GOVERNANCE", "COMPLIANCE"):
    raise ImproperlyConfigured("AUDIT_ARCHIVE_LOCK_MODE must be GOVERNANCE or COMPLIANCE.")
# Rows stay in the database this many days (searchable in admin); older ones are deleted
# once their day's archive object has been read back and its SHA-256 matches. 0: never prune.
AUDIT_DB_RETENTION_DAYS = env.int("AUDIT_DB_RETENTION_DAYS", default=400)

# --- Webhook source checks (integrations.webhooks.sources) ------------------------
# Off by default: signatures are the authentication. WEBHOOK_SOURCE_CHECK names the providers whose
# deliveries must also come from a known network: the provider's published list
# (WEBHOOK_PUBLISHED_SOURCES) unless WEBHOOK_SOURCE_NETWORKS_JSON gives it networks of its own,
# e.g. WEBHOOK_SOURCE_CHECK=stripe WEBHOOK_SOURCE_NETWORKS_JSON='{"twilio": ["198.51.100.0/24"]}'.
WEBHOOK_SOURCE_CHECK = env.list("WEBHOOK_SOURCE_CHECK", default=[])
WEBHOOK_SOURCE_NETWORKS = (
    env.json("WEBHOOK_SOURCE_NETWORKS_JSON", default={})
    if env.str("WEBHOOK_SOURCE_NETWORKS_JSON", default="").strip()
    else {}
)
if not isinstance(WEBHOOK_SOURCE_NETWORKS, dict):
    raise ImproperlyConfigured("WEBHOOK_SOURCE_NETWORKS_JSON must be a JSON object of provider -> list of CIDRs.")
# Proxies (CIDRs) whose X-Forwarded-For is believed: the client is the right-most address that is not one of them.
WEBHOOK_TRUSTED_PROXIES = env.list("WEBHOOK_TRUSTED_PROXIES", default=[])

# --- Retention (integrations.retention) -------------------------------------------
# Days each kind of data is kept; 0 keeps it forever. Enforced nightly in small batches.
RETENTION_WEBHOOK_PAYLOAD_DAYS = env.int("RETENTION_WEBHOOK_PAYLOAD_DAYS", default=30)
RETENTION_CALL_LOG_DAYS = env.int("RETENTION_CALL_LOG_DAYS", default=90)
RETENTION_AI_PROMPT_DAYS = env.int("RETENTION_AI_PROMPT_DAYS", default=30)
RETENTION_SMS_BODY_DAYS = env.int("RETENTION_SMS_BODY_DAYS", default=90)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)

if SENTRY_DSN:
    from config.sentry import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)

# --- Beat -------------------------------------------------------------------------
from celery.schedules import crontab  # noqa: E402

from .celery import CELERY_BEAT_SCHEDULE  # noqa: E402

CELERY_BEAT_SCHEDULE["integrations.alerts_evaluate"] = {
    "task": "integrations.alerts_evaluate",
    "schedule": float(ALERT_EVALUATE_INTERVAL_SECONDS),
}
# Nightly, after midnight UTC: yesterday's audit events to S3, then retention (both in small batches).
CELERY_BEAT_SCHEDULE["integrations.audit_archive"] = {
    "task": "integrations.audit_archive",
    "schedule": crontab(minute=15, hour=0),
}
CELERY_BEAT_SCHEDULE["integrations.retention_enforce"] = {
    "task": "integrations.retention_enforce",
    "schedule": crontab(minute=45, hour=1),
}
