"""Celery (broker, queues, beat) and the webhook inbox's processing settings."""

from ._env import VAR_DIR, env, env_bool
from .base import REDIS_URL

# --- Celery ---------------------------------------------------------------

# The filesystem broker names a host only so kombu does not warn "No hostname was supplied".
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://localhost/"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange bindings (kombu's default is ./control in the working directory).
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The default 1 s poll makes a worker take about one task a second.
        "polling_interval": 0.05,
    }
elif CELERY_BROKER_URL.startswith("redis"):
    # Redis hands an unacknowledged message (a worker died) to another worker after this; set below.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": None}
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES_NAMES = ["default", "payments", "messaging", "ai", "documents", "scheduling", "travel"]
CELERY_TASK_ROUTES = ("config.celery.route_by_module",)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
HEARTBEAT_INTERVAL_SECONDS = env.int("HEARTBEAT_INTERVAL_SECONDS", default=15)
# /readyz fails when no worker has answered for this long.
HEARTBEAT_MAX_AGE_SECONDS = env.int("HEARTBEAT_MAX_AGE_SECONDS", default=90)

# --- Time limits: every task has one ----------------------------------------
# Soft: the task gets SoftTimeLimitExceeded (ProviderTask retries it like a timeout); hard: its process is
# killed. Per-task overrides below, for the tasks that stream files or walk a whole account.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=90)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=120)
_LONG_TASK_LIMITS = {"soft_time_limit": 600, "time_limit": 660}
CELERY_TASK_ANNOTATIONS = {
    # S3 calls time out after 300 s in a worker; a scan streams the whole object through clamd.
    "documents.version_scan": _LONG_TASK_LIMITS,
    "documents.version_quarantine": _LONG_TASK_LIMITS,
    "documents.document_purge": _LONG_TASK_LIMITS,
    "documents.sweep_orphans": {"soft_time_limit": 1200, "time_limit": 1260},
    # Streams a whole recording (an hour of video is ~1 GB) from the provider, then up to S3.
    "scheduling.recording_copy": _LONG_TASK_LIMITS,
    # Walks every Stripe object of the last days, page by page.
    "payments.reconcile_stripe": {"soft_time_limit": 1200, "time_limit": 1260},
}
# Slightly more than the longest hard limit: a message whose worker died comes back once its run cannot be
# alive any more, never an hour later; the outbox sweeper usually sends it again sooner (integrations.outbox).
CELERY_VISIBILITY_TIMEOUT_SECONDS = (
    max([CELERY_TASK_TIME_LIMIT, *(a["time_limit"] for a in CELERY_TASK_ANNOTATIONS.values())]) + 60
)
if "visibility_timeout" in CELERY_BROKER_TRANSPORT_OPTIONS:
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = CELERY_VISIBILITY_TIMEOUT_SECONDS

CELERY_BEAT_SCHEDULE = {
    "integrations.ping": {"task": "integrations.ping", "schedule": float(HEARTBEAT_INTERVAL_SECONDS)},
    "integrations.idempotency_purge": {"task": "integrations.idempotency_purge", "schedule": 3600.0},
}

# --- Webhook inbox (integrations.webhooks) ----------------------------------
# Bodies above this many bytes are refused with 413 before anything parses them.
WEBHOOK_MAX_BYTES = env.int("WEBHOOK_MAX_BYTES", default=1024 * 1024)
# Requests under this prefix skip every middleware but WEBHOOK_MIDDLEWARE (integrations.webhooks.fastpath):
# providers need no session, user, CSRF, CORS or lockout, and each delivery's CPU is the inbox's throughput.
WEBHOOK_FAST_PATH_PREFIX = env.str("WEBHOOK_FAST_PATH_PREFIX", default="/webhooks/")  # empty: off
WEBHOOK_MIDDLEWARE = ["integrations.middleware.RequestIdMiddleware"]
# Handler attempts per event before it is left `failed` and an alert is raised.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
# Retry delay: full jitter over min(MAX, BASE * 2**(attempt-1)) seconds.
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=10)
WEBHOOK_RETRY_MAX_SECONDS = env.int("WEBHOOK_RETRY_MAX_SECONDS", default=3600)
# Drains: events claimed per batch (one transaction, a savepoint per handler), the time after which a
# batch stops taking new events and leaves the rest to the next drain, and how long a "drain queued" flag
# in Redis suppresses queueing another drain for the same provider.
WEBHOOK_DRAIN_BATCH_SIZE = env.int("WEBHOOK_DRAIN_BATCH_SIZE", default=100)
WEBHOOK_DRAIN_MAX_SECONDS = env.float("WEBHOOK_DRAIN_MAX_SECONDS", default=5.0)
WEBHOOK_DRAIN_COALESCE_SECONDS = env.float("WEBHOOK_DRAIN_COALESCE_SECONDS", default=10.0)
# A drain that left events because another drainer's batch holds their object looks again after this.
WEBHOOK_HELD_RECHECK_SECONDS = env.float("WEBHOOK_HELD_RECHECK_SECONDS", default=1.0)
# An event whose processing is this overdue makes the beat task queue a drain of its provider.
WEBHOOK_REQUEUE_AFTER_SECONDS = env.int("WEBHOOK_REQUEUE_AFTER_SECONDS", default=120)
WEBHOOK_REQUEUE_INTERVAL_SECONDS = env.int("WEBHOOK_REQUEUE_INTERVAL_SECONDS", default=60)
CELERY_BEAT_SCHEDULE["integrations.webhook_requeue_stale"] = {
    "task": "integrations.webhook_requeue_stale",
    "schedule": float(WEBHOOK_REQUEUE_INTERVAL_SECONDS),
}

# --- Outbox (integrations.outbox): no task stalls or is lost ----------------------
# A row's task is sent again when nothing finished it this long after it was enqueued.
OUTBOX_GRACE_SECONDS = env.int("OUTBOX_GRACE_SECONDS", default=30)
# A run's lease on its row, renewed every third of it while the run lives: a worker killed mid-run
# leaves its row due again after at most this (plus a sweep).
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", default=24.0)
# The sweeper's period: the longest a refused or lost message waits beyond the grace.
OUTBOX_SWEEP_INTERVAL_SECONDS = env.int("OUTBOX_SWEEP_INTERVAL_SECONDS", default=30)
# Rows claimed per kind per batch, and the time after which a sweep leaves the rest to the next one.
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=500)
OUTBOX_SWEEP_MAX_SECONDS = env.float("OUTBOX_SWEEP_MAX_SECONDS", default=10.0)
# A row swept again waits grace * 2**sweeps, at most this long, before the next sweep.
OUTBOX_BACKOFF_MAX_SECONDS = env.int("OUTBOX_BACKOFF_MAX_SECONDS", default=900)
# Rows still due after this many sweeps raise a task_failed alert for their kind.
OUTBOX_ALERT_AFTER_SWEEPS = env.int("OUTBOX_ALERT_AFTER_SWEEPS", default=5)
CELERY_BEAT_SCHEDULE["integrations.outbox_sweep"] = {
    "task": "integrations.outbox_sweep",
    "schedule": float(OUTBOX_SWEEP_INTERVAL_SECONDS),
}

# --- Call log of Celery jobs (integrations.gateway.handoff) -----------------------
# A worker's successful provider calls hand their ProviderCall rows to Redis (one RPUSH) and a drainer
# thread per worker process writes them in batches, exactly once; off, each job writes its row itself.
CALL_LOG_HANDOFF = env_bool("CALL_LOG_HANDOFF", True)
# Beat: batches of stopped drainers back to the queue, and the queue written when no worker drains it.
CALL_LOG_HANDOFF_SWEEP_SECONDS = env.int("CALL_LOG_HANDOFF_SWEEP_SECONDS", default=60)
CELERY_BEAT_SCHEDULE["integrations.call_log_handoff_sweep"] = {
    "task": "integrations.call_log_handoff_sweep",
    "schedule": float(CALL_LOG_HANDOFF_SWEEP_SECONDS),
}
