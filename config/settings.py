"""Settings for the Integration Hub.

Everything comes from the environment through django-environ (and an optional
`.env` file, plus the file named by DJANGO_ENV_FILE, which `make run` uses for
its generated development secrets). Every variable is listed in `.env.example`.

Production is the default: DEBUG is off unless DJANGO_DEBUG=true, and a
missing SECRET_KEY or FIELD_ENCRYPTION_KEYS stops start-up.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# Values already in the environment win over both files.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")
_env_file = env.str("DJANGO_ENV_FILE", default="")
if _env_file:
    environ.Env.read_env(BASE_DIR / _env_file)


def _bool(name, default):
    """A strict boolean: a typo such as DJANGO_DEBUG=ture stops start-up."""
    raw = env.str(name, default="")
    if raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


# --- Core -----------------------------------------------------------------

DEBUG = _bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is not set; see .env.example (make run generates one for development).")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Public base URL of the hub; providers call back here (webhook signatures are
# computed over it, so it must be what the provider sees, not what the proxy forwards).
APP_URL = env.str("APP_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "corsheaders",
    "django_celery_beat",
    "django_prometheus",
    "integrations",
    "payments",
    "documents",
    "messaging",
    "ai",
    "scheduling",
    "travel",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "integrations.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat share the file: WAL lets readers run beside the one
    # writer, IMMEDIATE transactions avoid "database is locked" on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Redis ---------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="hub")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
    SILENCED_SYSTEM_CHECKS = []
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": CACHE_KEY_PREFIX}}
    # django-ratelimit needs a cache with atomic increments shared by every
    # web process. Without REDIS_URL (make run, a developer's laptop) there is
    # one web process, so a local-memory cache counts correctly; production
    # always sets REDIS_URL and then these checks stay on.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- Celery ---------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # The default 1 s poll makes a worker take about one task a second.
        "polling_interval": 0.05,
    }
elif CELERY_BROKER_URL.startswith("redis"):
    # acks_late tasks that outlive this are redelivered; longer than any task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
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
CELERY_BEAT_SCHEDULE = {
    "integrations.ping": {"task": "integrations.ping", "schedule": float(HEARTBEAT_INTERVAL_SECONDS)},
    "integrations.idempotency_purge": {"task": "integrations.idempotency_purge", "schedule": 3600.0},
}

# --- Webhook inbox (integrations.webhooks) ----------------------------------
# Bodies above this many bytes are refused with 413 before anything parses them.
WEBHOOK_MAX_BYTES = env.int("WEBHOOK_MAX_BYTES", default=1024 * 1024)
# Handler attempts per event before it is left `failed` and an alert is raised.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
# Retry delay: full jitter over min(MAX, BASE * 2**(attempt-1)) seconds.
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=10)
WEBHOOK_RETRY_MAX_SECONDS = env.int("WEBHOOK_RETRY_MAX_SECONDS", default=3600)
# An event whose processing is this overdue is enqueued again by the beat task.
WEBHOOK_REQUEUE_AFTER_SECONDS = env.int("WEBHOOK_REQUEUE_AFTER_SECONDS", default=120)
WEBHOOK_REQUEUE_INTERVAL_SECONDS = env.int("WEBHOOK_REQUEUE_INTERVAL_SECONDS", default=60)
CELERY_BEAT_SCHEDULE["integrations.webhook_requeue_stale"] = {
    "task": "integrations.webhook_requeue_stale",
    "schedule": float(WEBHOOK_REQUEUE_INTERVAL_SECONDS),
}

# --- Auth, API ------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an API client without credentials gets 401 with
        # `WWW-Authenticate: Token` rather than a 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "integrations.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "integrations.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Integration Hub API",
    "DESCRIPTION": "The one place where the platform talks to providers: payments, documents, messaging, AI, scheduling, travel.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status` with different choices: one named enum each.
    "ENUM_NAME_OVERRIDES": {
        "InvoiceStatusEnum": "payments.models.Invoice.Status",
        "PaymentStatusEnum": "payments.models.Payment.Status",
        "RefundStatusEnum": "payments.models.Refund.Status",
        "SubscriptionStatusEnum": "payments.models.Subscription.Status",
    },
}

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"

# Idempotency-Key records are kept this long (integrations.api.idempotency).
IDEMPOTENCY_TTL_SECONDS = env.int("IDEMPOTENCY_TTL_SECONDS", default=24 * 3600)

# Inbound API limits (django-ratelimit); the cache above counts them.
RATELIMIT_ENABLE = _bool("RATELIMIT_ENABLE", True)

# --- Security -------------------------------------------------------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = _bool("USE_X_FORWARDED_HOST", False)
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Stored credentials (OAuth tokens) are Fernet-encrypted. The first key
# encrypts; every key decrypts, so keys rotate (manage.py rotate_encryption_keys).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
if not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEYS is not set; generate one with "
        "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
    )

# --- I18N, static ---------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = VAR_DIR / "media"

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="hub@localhost")

# --- Logging --------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_JSON = _bool("LOG_JSON", not DEBUG)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "integrations.logging.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "json" if LOG_JSON else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Outbound call gateway (integrations.gateway) -------------------------
# Each table below can be adjusted from the environment with a JSON object of
# the same shape (e.g. RATE_LIMITS_JSON='{"twilio": {"requests": {"rate": 10}}}'),
# merged over these defaults per provider.


def _merged(defaults, env_name):
    overrides = env.json(env_name, default={})
    if not isinstance(overrides, dict):
        raise ImproperlyConfigured(f"{env_name} must be a JSON object")
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


# Token buckets: "rate" tokens per second, "burst" the bucket's size. A scope
# (Stripe account, Gmail user, Twilio sender number) gets its own bucket with
# the provider's limit unless "scopes" names another for it.
RATE_LIMITS = _merged(
    {
        "stripe": {"requests": {"rate": 25, "burst": 25}},
        "s3": {"requests": {"rate": 100, "burst": 200}},
        # Gmail: 250 quota units per user per second (callers pass the units as cost).
        "gmail": {"requests": {"rate": 250, "burst": 250}},
        "outlook": {"requests": {"rate": 4, "burst": 10}},
        # Twilio: 1 message/s per long-code sender; short codes and messaging services go faster.
        "twilio": {
            "requests": {"rate": 1, "burst": 1},
            # Reads (price and status fetches) share the account's REST budget, not a sender's.
            "scopes": {"rest": {"requests": {"rate": 10, "burst": 20}}},
        },
        "openai": {"requests": {"rate": 8, "burst": 20}, "tokens": {"rate": 5000, "burst": 100000}},
        "anthropic": {"requests": {"rate": 8, "burst": 20}, "tokens": {"rate": 5000, "burst": 100000}},
        "openrouter": {"requests": {"rate": 5, "burst": 10}},
        "xai": {"requests": {"rate": 5, "burst": 10}},
        "gemini": {"requests": {"rate": 5, "burst": 10}},
        "github_models": {"requests": {"rate": 0.25, "burst": 5}},
        "duffel": {"requests": {"rate": 2, "burst": 5}},
        "google_calendar": {"requests": {"rate": 10, "burst": 20}},
        "microsoft_calendar": {"requests": {"rate": 4, "burst": 10}},
        "zoom": {"requests": {"rate": 10, "burst": 10}},
        "webex": {"requests": {"rate": 5, "burst": 10}},
    },
    "RATE_LIMITS_JSON",
)
# A task may book a token at most this far ahead; beyond it the task is simply deferred.
RATE_LIMIT_MAX_RESERVE_SECONDS = env.float("RATE_LIMIT_MAX_RESERVE_SECONDS", default=3600.0)

CIRCUIT_BREAKER = {
    "failure_threshold": env.int("CIRCUIT_FAILURE_THRESHOLD", default=5),
    "cooldown_seconds": env.float("CIRCUIT_COOLDOWN_SECONDS", default=30.0),
    "probe_timeout_seconds": env.float("CIRCUIT_PROBE_TIMEOUT_SECONDS", default=30.0),
}
CIRCUIT_BREAKER_OVERRIDES = _merged({}, "CIRCUIT_BREAKER_JSON")

# SDK timeouts in seconds: short inside a web request, longer in a worker.
PROVIDER_TIMEOUTS = _merged(
    {
        "default": {"web": 10.0, "task": 30.0},
        "s3": {"web": 30.0, "task": 300.0},
        "openai": {"web": 60.0, "task": 120.0},
        "anthropic": {"web": 60.0, "task": 120.0},
    },
    "PROVIDER_TIMEOUTS_JSON",
)

# Celery retries: exponential backoff with full jitter, base * 2**n capped at cap seconds.
PROVIDER_RETRY = _merged(
    {
        "default": {"base": 2.0, "cap": 300.0, "max_retries": 6},
        "stripe": {"base": 2.0, "cap": 120.0, "max_retries": 8},
        "twilio": {"base": 2.0, "cap": 300.0, "max_retries": 6},
    },
    "PROVIDER_RETRY_JSON",
)

# Price table in USD: per operation ("*" for any), a fixed "per_call" and
# "per_unit" prices for the units the adapter reports. Adapters that learn the
# real price (Stripe's fee, Twilio's price) pass it and it wins.
PROVIDER_PRICES = _merged(
    {
        "stripe": {"charge": {"per_call": "0.30", "per_unit": {"amount_usd": "0.029"}}},
        # S3: PUT/COPY/POST/LIST $0.005 and GET/HEAD $0.0004 per 1,000 requests
        # (a multipart upload is several), transfer out $0.09/GB, DELETE free;
        # "storage" is not an operation but the GB-month price per storage class.
        "s3": {
            "*": {"per_unit": {"requests": "0.000005", "bytes_in": "0", "bytes_out": "0.00000000009"}},
            "get": {"per_unit": {"requests": "0.0000004", "bytes_out": "0.00000000009"}},
            "head": {"per_unit": {"requests": "0.0000004"}},
            "delete": {"per_call": "0"},
            "storage": {
                "per_gb_month": {
                    "STANDARD": "0.023",
                    "INTELLIGENT_TIERING": "0.023",
                    "STANDARD_IA": "0.0125",
                    "ONEZONE_IA": "0.01",
                    "GLACIER_IR": "0.004",
                    "GLACIER": "0.0036",
                    "DEEP_ARCHIVE": "0.00099",
                }
            },
        },
        "twilio": {
            # Estimates until Twilio reports the billed price (sms.price / call.price record it).
            "sms.send": {"per_unit": {"segments": "0.0083"}},
            "call.create": {"per_unit": {"minutes": "0.014"}},
            "call.price": {"per_unit": {"minutes": "0.014"}},
        },
        "duffel": {"*": {"per_call": "0"}},
    },
    "PROVIDER_PRICES_JSON",
)

# provider_failure_rate alert: at least this many calls in the hour, and this error share.
FAILURE_ALERT_MIN_CALLS = env.int("FAILURE_ALERT_MIN_CALLS", default=20)
FAILURE_ALERT_RATE = env.float("FAILURE_ALERT_RATE", default=0.5)

# --- Providers ------------------------------------------------------------
# One block per provider; integrations.registry names the settings each needs.
# Unset means "not configured": the gateway refuses calls, it never fakes them.

# Stripe
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Where Stripe Checkout sends the customer back (fixed here, never taken from the client: no open redirect).
STRIPE_CHECKOUT_SUCCESS_URL = env.str("STRIPE_CHECKOUT_SUCCESS_URL", default="") or (
    f"{APP_URL}/payments/checkout/success?session_id={{CHECKOUT_SESSION_ID}}"
)
STRIPE_CHECKOUT_CANCEL_URL = env.str("STRIPE_CHECKOUT_CANCEL_URL", default="") or f"{APP_URL}/payments/checkout/cancel"
# The reconciliation beat task: how often, and how far back it lists PaymentIntents and refunds.
STRIPE_RECONCILE_INTERVAL_SECONDS = env.int("STRIPE_RECONCILE_INTERVAL_SECONDS", default=3600)
STRIPE_RECONCILE_HOURS = env.int("STRIPE_RECONCILE_HOURS", default=72)
CELERY_BEAT_SCHEDULE["payments.reconcile_stripe"] = {
    "task": "payments.reconcile_stripe",
    "schedule": float(STRIPE_RECONCILE_INTERVAL_SECONDS),
    "kwargs": {"hours": STRIPE_RECONCILE_HOURS},
}

# AWS S3
S3_BUCKET = env.str("S3_BUCKET", default="")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="")
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="")
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="us-east-1")
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="")
# "path" for MinIO and other S3-compatible servers that have no virtual-host names.
AWS_S3_ADDRESSING_STYLE = env.str("AWS_S3_ADDRESSING_STYLE", default="") or None
# Objects are private and encrypted at rest: the canned ACL (empty for buckets
# with ACLs disabled, which are private anyway) and SSE (AES256 or aws:kms).
S3_OBJECT_ACL = env.str("S3_OBJECT_ACL", default="private")
S3_SSE = env.str("S3_SSE", default="AES256")
S3_SSE_KMS_KEY_ID = env.str("S3_SSE_KMS_KEY_ID", default="")
S3_STORAGE_CLASS = env.str("S3_STORAGE_CLASS", default="STANDARD")
# Multipart: files from the threshold up go in parts; memory per upload stays
# near concurrency x part size, whatever the file's size. S3 parts are >= 5 MiB.
S3_MULTIPART_THRESHOLD_BYTES = env.int("S3_MULTIPART_THRESHOLD_BYTES", default=8 * 1024 * 1024)
S3_MULTIPART_CHUNK_BYTES = env.int("S3_MULTIPART_CHUNK_BYTES", default=8 * 1024 * 1024)
S3_MAX_CONCURRENCY = env.int("S3_MAX_CONCURRENCY", default=2)
if S3_MULTIPART_CHUNK_BYTES < 5 * 1024 * 1024:
    raise ImproperlyConfigured("S3_MULTIPART_CHUNK_BYTES must be at least 5 MiB (5242880), S3's smallest part.")
if S3_MAX_CONCURRENCY < 1:
    raise ImproperlyConfigured("S3_MAX_CONCURRENCY must be at least 1.")
# Bucket lifecycle (manage.py configure_bucket_lifecycle); 0 days switches a rule off.
S3_LIFECYCLE_IA_DAYS = env.int("S3_LIFECYCLE_IA_DAYS", default=30)
S3_LIFECYCLE_IA_CLASS = env.str("S3_LIFECYCLE_IA_CLASS", default="STANDARD_IA")
S3_LIFECYCLE_ARCHIVE_DAYS = env.int("S3_LIFECYCLE_ARCHIVE_DAYS", default=180)
S3_LIFECYCLE_ARCHIVE_CLASS = env.str("S3_LIFECYCLE_ARCHIVE_CLASS", default="GLACIER_IR")
S3_LIFECYCLE_ABORT_MULTIPART_DAYS = env.int("S3_LIFECYCLE_ABORT_MULTIPART_DAYS", default=7)
S3_LIFECYCLE_NONCURRENT_DAYS = env.int("S3_LIFECYCLE_NONCURRENT_DAYS", default=30)

# Documents (S3 when S3_BUCKET is set, else the filesystem under MEDIA_ROOT)
DOCUMENT_MAX_BYTES = env.int("DOCUMENT_MAX_BYTES", default=50 * 1024 * 1024)
# Bytes each user may keep (all versions); 0 = no quota.
DOCUMENT_USER_QUOTA_BYTES = env.int("DOCUMENT_USER_QUOTA_BYTES", default=0)
# Inbound uploads (new documents and new versions together) per user.
DOCUMENT_UPLOAD_RATE = env.str("DOCUMENT_UPLOAD_RATE", default="30/m")
DOCUMENT_URL_TTL_SECONDS = env.int("DOCUMENT_URL_TTL_SECONDS", default=300)
# true: no download until a clean virus scan (so also none while CLAMD_URL is unset).
DOCUMENT_REQUIRE_SCAN = _bool("DOCUMENT_REQUIRE_SCAN", False)
# Stored objects without a row are removed once older than this (an upload in
# flight has its object before its row).
DOCUMENT_ORPHAN_GRACE_SECONDS = env.int("DOCUMENT_ORPHAN_GRACE_SECONDS", default=3600)
DOCUMENT_ORPHAN_SWEEP_SECONDS = env.int("DOCUMENT_ORPHAN_SWEEP_SECONDS", default=3600)
# Infected objects are moved under this key prefix (S3 and MEDIA_ROOT alike), so
# a presigned URL handed out before the scan finished stops working.
DOCUMENT_QUARANTINE_PREFIX = env.str("DOCUMENT_QUARANTINE_PREFIX", default="quarantine/")
if (
    not DOCUMENT_QUARANTINE_PREFIX.endswith("/")
    or DOCUMENT_QUARANTINE_PREFIX.startswith(("/", "documents/"))
    or ".." in DOCUMENT_QUARANTINE_PREFIX.split("/")
    or len(DOCUMENT_QUARANTINE_PREFIX) > 150  # storage_key holds prefix + the original key
):
    raise ImproperlyConfigured(
        "DOCUMENT_QUARANTINE_PREFIX must be a relative key prefix of at most 150 characters, ending in '/' "
        "and outside documents/ "
        f"(got {DOCUMENT_QUARANTINE_PREFIX!r})."
    )
# ClamAV daemon: tcp://host:3310 or unix:///run/clamav/clamd.ctl; empty = no scanning.
CLAMD_URL = env.str("CLAMD_URL", default="")
CLAMD_TIMEOUT_SECONDS = env.float("CLAMD_TIMEOUT_SECONDS", default=60.0)
# Uploads above this spool to a temporary file instead of memory (Django's
# default, stated here because the documents upload path depends on it).
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=2621440)
CELERY_BEAT_SCHEDULE["documents.sweep_orphans"] = {
    "task": "documents.sweep_orphans",
    "schedule": float(DOCUMENT_ORPHAN_SWEEP_SECONDS),
}

# Google (OAuth, Gmail, Calendar, Meet share one OAuth client)
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")

# Microsoft (OAuth, Outlook mail, Calendar, Teams share one app registration)
MICROSOFT_CLIENT_ID = env.str("MICROSOFT_CLIENT_ID", default="")
MICROSOFT_CLIENT_SECRET = env.str("MICROSOFT_CLIENT_SECRET", default="")
MICROSOFT_TENANT = env.str("MICROSOFT_TENANT", default="common")

# Twilio
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_PHONE_NUMBER = env.str("TWILIO_PHONE_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_API_BASE = env.str("TWILIO_API_BASE", default="")
# Inbound calls: business hours when no BusinessHours row is active in admin.
TWILIO_BUSINESS_TIME_ZONE = env.str("TWILIO_BUSINESS_TIME_ZONE", default="UTC")
TWILIO_BUSINESS_HOURS = env.str("TWILIO_BUSINESS_HOURS", default="mon-fri 09:00-17:00")
TWILIO_BUSINESS_HOLIDAYS = env.list("TWILIO_BUSINESS_HOLIDAYS", default=[])
# Messages and calls whose cost is still unbooked this long after their last update get their price fetched.
TWILIO_COST_SWEEP_AFTER_SECONDS = env.int("TWILIO_COST_SWEEP_AFTER_SECONDS", default=3600)
CELERY_BEAT_SCHEDULE["messaging.costs_unbooked_sweep"] = {"task": "messaging.costs_unbooked_sweep", "schedule": 900.0}
TWILIO_VOICEMAIL_GREETING = env.str(
    "TWILIO_VOICEMAIL_GREETING",
    default="Sorry, we cannot take your call right now. Please leave a message after the tone.",
)

# AI providers
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
OPENROUTER_API_KEY = env.str("OPENROUTER_API_KEY", default="")
OPENROUTER_BASE_URL = env.str("OPENROUTER_BASE_URL", default="https://openrouter.ai/api/v1")
XAI_API_KEY = env.str("XAI_API_KEY", default="")
XAI_BASE_URL = env.str("XAI_BASE_URL", default="https://api.x.ai/v1")
GEMINI_API_KEY = env.str("GEMINI_API_KEY", default="")
GEMINI_BASE_URL = env.str("GEMINI_BASE_URL", default="https://generativelanguage.googleapis.com/v1beta/openai/")
GITHUB_MODELS_TOKEN = env.str("GITHUB_MODELS_TOKEN", default="")
GITHUB_MODELS_BASE_URL = env.str("GITHUB_MODELS_BASE_URL", default="https://models.github.ai/inference")

# AI gateway (ai app). A `task` names an ordered chain of (provider, model):
# the gateway tries them in order, falling through on retryable errors.
# Cheap models first for `simple`, as the old review recommended.
AI_ROUTES = _merged(
    {
        "simple": [
            ["gemini", "gemini-2.5-flash-lite"],
            ["openai", "gpt-4o-mini"],
            ["anthropic", "claude-haiku-4-5"],
            ["xai", "grok-3-mini"],
            ["openrouter", "meta-llama/llama-3.3-70b-instruct"],
            ["github_models", "openai/gpt-4o-mini"],
        ],
        "writing": [
            ["anthropic", "claude-sonnet-4-6"],
            ["openai", "gpt-4.1"],
            ["gemini", "gemini-2.5-pro"],
            ["openrouter", "anthropic/claude-sonnet-4.5"],
            ["github_models", "openai/gpt-4.1"],
        ],
        # Reasoning models accept no temperature: a request that sets one is refused by OpenAI (400).
        "reasoning": [
            ["openai", "gpt-5-mini"],
            ["anthropic", "claude-sonnet-4-6"],
            ["gemini", "gemini-2.5-pro"],
            ["xai", "grok-4"],
            ["openrouter", "deepseek/deepseek-r1"],
        ],
    },
    "AI_ROUTES_JSON",
)
for _task, _chain in AI_ROUTES.items():
    if not isinstance(_chain, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(x, str) and x for x in e) for e in _chain
    ):
        raise ImproperlyConfigured(f"AI_ROUTES_JSON: task {_task!r} must be a list of [provider, model] pairs")
AI_DEFAULT_TASK = env.str("AI_DEFAULT_TASK", default="simple")
if AI_DEFAULT_TASK not in AI_ROUTES:
    raise ImproperlyConfigured(f"AI_DEFAULT_TASK {AI_DEFAULT_TASK!r} is not a task in AI_ROUTES")
# USD per 1M tokens: input, output and cached input, per provider and model
# ("*" prices any other model of that provider). A model without a price costs 0 and logs a warning.
AI_MODEL_PRICES = _merged(
    {
        "openai": {
            "gpt-4o-mini": {"input": "0.15", "output": "0.60", "cached_input": "0.075"},
            "gpt-4.1": {"input": "2.00", "output": "8.00", "cached_input": "0.50"},
            "gpt-5-mini": {"input": "0.25", "output": "2.00", "cached_input": "0.025"},
        },
        "anthropic": {
            "claude-haiku-4-5": {"input": "1.00", "output": "5.00", "cached_input": "0.10"},
            "claude-sonnet-4-6": {"input": "3.00", "output": "15.00", "cached_input": "0.30"},
        },
        "gemini": {
            "gemini-2.5-flash-lite": {"input": "0.10", "output": "0.40", "cached_input": "0.025"},
            "gemini-2.5-pro": {"input": "1.25", "output": "10.00", "cached_input": "0.31"},
        },
        "xai": {
            "grok-3-mini": {"input": "0.30", "output": "0.50", "cached_input": "0.075"},
            "grok-4": {"input": "3.00", "output": "15.00", "cached_input": "0.75"},
        },
        "openrouter": {
            "meta-llama/llama-3.3-70b-instruct": {"input": "0.12", "output": "0.30"},
            "anthropic/claude-sonnet-4.5": {"input": "3.00", "output": "15.00", "cached_input": "0.30"},
            "deepseek/deepseek-r1": {"input": "0.55", "output": "2.19"},
        },
        # Free within GitHub's per-account rate limits.
        "github_models": {"*": {"input": "0", "output": "0"}},
    },
    "AI_MODEL_PRICES_JSON",
)
# Per-user monthly spend (USD) across every AI provider; staff override it per user in admin.
AI_USER_MONTHLY_BUDGET_USD = env.str("AI_USER_MONTHLY_BUDGET_USD", default="10.00")
try:
    if float(AI_USER_MONTHLY_BUDGET_USD) < 0:
        raise ValueError
except ValueError:
    raise ImproperlyConfigured(f"AI_USER_MONTHLY_BUDGET_USD must be a non-negative amount, got {AI_USER_MONTHLY_BUDGET_USD!r}") from None
AI_BUDGET_ALERT_PERCENT = env.int("AI_BUDGET_ALERT_PERCENT", default=80)
AI_CACHE_TTL_SECONDS = env.int("AI_CACHE_TTL_SECONDS", default=3600)
# Store prompt and answer text on AI request rows (admin); off by default: they may hold personal data.
AI_LOG_PROMPTS = _bool("AI_LOG_PROMPTS", False)
# Completions per user (django-ratelimit rate, e.g. 30/m).
AI_USER_RATE = env.str("AI_USER_RATE", default="30/m")
# A completion walks its chain for at most this long; a provider's Retry-After
# is waited out (once) only when it is below AI_RETRY_WAIT_MAX_SECONDS and fits.
AI_DEADLINE_SECONDS = env.float("AI_DEADLINE_SECONDS", default=90.0)
AI_RETRY_WAIT_MAX_SECONDS = env.float("AI_RETRY_WAIT_MAX_SECONDS", default=2.0)
# Anthropic requires max_tokens; this is sent when the client gives none.
AI_DEFAULT_MAX_TOKENS = env.int("AI_DEFAULT_MAX_TOKENS", default=1024)

# Flights (Duffel)
DUFFEL_ACCESS_TOKEN = env.str("DUFFEL_ACCESS_TOKEN", default="")
DUFFEL_API_BASE = env.str("DUFFEL_API_BASE", default="https://api.duffel.com")

# Video
ZOOM_ACCOUNT_ID = env.str("ZOOM_ACCOUNT_ID", default="")
ZOOM_CLIENT_ID = env.str("ZOOM_CLIENT_ID", default="")
ZOOM_CLIENT_SECRET = env.str("ZOOM_CLIENT_SECRET", default="")
WEBEX_CLIENT_ID = env.str("WEBEX_CLIENT_ID", default="")
WEBEX_CLIENT_SECRET = env.str("WEBEX_CLIENT_SECRET", default="")
