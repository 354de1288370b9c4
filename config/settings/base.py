"""Core Django settings: apps, middleware, database, cache, API, static files, logging."""

from django.core.exceptions import ImproperlyConfigured

from ._env import BASE_DIR, VAR_DIR, env, env_bool  # noqa: F401

# --- Core -----------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is not set; see .env.example (make run generates one for development).")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Public base URL of the hub; providers call back here (webhook signatures are
# computed over it, so it must be what the provider sees, not what the proxy forwards).
APP_URL = env.str("APP_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "integrations.admin_site.ConsoleAdminConfig",  # django.contrib.admin, with the console's display rules
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc assets served by the hub: /api/docs/ works offline
    "corsheaders",
    "django_celery_beat",
    "django_prometheus",
    "csp",
    "axes",
    "integrations",
    "integrations.audit",
    "payments",
    "documents",
    "messaging",
    "messaging.mail",
    "ai",
    "scheduling",
    "travel",
    "privacy",
]

MIDDLEWARE = [
    # First: provider callbacks under /webhooks/ run through WEBHOOK_MIDDLEWARE only (the lean ack path).
    "integrations.webhooks.fastpath.WebhookFastPathMiddleware",
    # An API client's AI completion runs through AI_MIDDLEWARE only (ai.fastpath, AI_FAST_PATH).
    "ai.fastpath.AiFastPathMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "integrations.middleware.RequestIdMiddleware",
    # With DEBUG on (make run), /api/ and /webhooks/ still answer errors as JSON, not Django's debug page.
    # Outside the middleware below, so their own process_exception (metrics, lockouts) sees an error first.
    "integrations.api.errors.JsonErrorsUnderDebugMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files straight after security headers, before sessions and
    # auth touch the request: admin CSS and Swagger UI cost no database work.
    "config.staticfiles.AsgiWhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A NUL in an /api/ query string is a JSON 400 before any filter sees it.
    "integrations.api.guards.QueryStringGuardMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-csp's, its policy built once for the responses that have no nonce (every API answer).
    "integrations.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, so a login lockout flagged anywhere inside becomes the 429 answer.
    "axes.middleware.AxesMiddleware",
]
# What an AI completion with an API token needs of the chain above (ai.fastpath), in the same order: request
# id and access log, metrics, JSON errors, security headers, CORS, Django's host check, the query-string guard.
# Left out: static files, sessions, CSRF (DRF checks it only for session authentication), Django's user,
# messages and login lockout.
AI_MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "integrations.middleware.RequestIdMiddleware",
    "integrations.api.errors.JsonErrorsUnderDebugMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "integrations.api.guards.QueryStringGuardMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "integrations.middleware.CSPMiddleware",
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

# Empty (`DATABASE_URL=` as .env.example has it) is unset: SQLite under var/, not a start-up KeyError: 'ENGINE'.
_database_url = env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
if "://" not in _database_url:
    # django-environ would only warn, printing the parsed URL with its password, and Django then fail on
    # KeyError: 'ENGINE'. A path or a host without a scheme stops here, the value unsaid.
    raise ImproperlyConfigured(
        "DATABASE_URL must be a URL such as postgres://user:password@host:5432/name (or sqlite:////absolute/path)."
    )
DATABASES = {"default": env.db_url_config(_database_url)}
# integrations.aio.db_hop's own threads; 0 = Django's one shared thread (SQLite, persistent connections).
DB_HOP_THREADS = 0
# integrations.aio.view_hop's threads: with the pool (below), config.asgi_handler serves each request for a
# sync view as WSGI does, Django's synchronous chain and the view in one hop to one of these threads.
# 0 = Django's own ASGI path (a new thread per request plus a hop per signal).
SYNC_VIEW_THREADS = 0
WEBHOOK_THREADS = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat share the file: WAL lets readers run beside the one
    # writer, IMMEDIATE transactions avoid "database is locked" on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
elif env_bool("DATABASE_POOL", False):
    # The ASGI web server (config/gunicorn.conf.py turns this on): Django runs
    # each request's sync work in a thread of its own, so persistent
    # per-thread connections would mean one new connection per request, held
    # for the whole of a minute-long stream. A pool per worker process hands a
    # connection out per piece of work instead (integrations.aio.db_hop).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
    }
    # integrations.aio.db_hop: an AI request's database work runs on threads of its own, one
    # connection from the pool per hop, so one slow hop (a commit, a locked row) never queues
    # every other request's behind Django's one shared thread. Two: their work is short and
    # CPU-bound, and with eight a burst of 256 streams opening or ending kept eight threads fighting
    # for the GIL, and every other request of the worker waited (bench_ai_serving: health probe
    # p99 140 ms with eight, 35 ms with two).
    DB_HOP_THREADS = env.int("DB_HOP_THREADS", default=2)
    # config.asgi_handler's sync views (the REST API, admin, webhooks): a view may wait on a
    # provider for seconds (a flight search), so more threads, as a gthread worker would have.
    SYNC_VIEW_THREADS = env.int("SYNC_VIEW_THREADS", default=16)
    # Webhook deliveries (verify, insert, ack: short) on threads of their own, so a slow API view never
    # delays an ack; four acked a saturating burst faster and with less CPU each than sixteen (bench_inbox).
    WEBHOOK_THREADS = env.int("WEBHOOK_THREADS", default=4)
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Behind pgbouncer in transaction pooling mode a server-side cursor (QuerySet.iterator()) cannot
    # outlive its transaction: README "Scaling out".
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DATABASE_DISABLE_SERVER_SIDE_CURSORS", False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Redis ---------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    # redis-py refuses it only when first used: start-up passed, then token creation and the limiter raised 500s.
    raise ImproperlyConfigured(
        "REDIS_URL must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)."
    )
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="hub")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "integrations.cache.RedisCache",
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
    # always sets REDIS_URL and then these checks stay on. This cache is one
    # per process: what a worker must reach (AI answers, which erasure
    # deletes) is not kept in it (ai.services.cache).
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

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
        "integrations.auth.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies with NUL or lone surrogates anywhere are a 400 (PostgreSQL cannot store them).
    "DEFAULT_PARSER_CLASSES": [
        "integrations.api.guards.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
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
    # Swagger UI and ReDoc from the pinned drf-spectacular-sidecar package, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation documents its error responses with the one Error component.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "integrations.api.schema.document_errors",
    ],
    # Several models have a `status` with different choices: one named enum each.
    "ENUM_NAME_OVERRIDES": {
        "InvoiceStatusEnum": "payments.models.Invoice.Status",
        "PaymentStatusEnum": "payments.models.Payment.Status",
        "RefundStatusEnum": "payments.models.Refund.Status",
        "SubscriptionStatusEnum": "payments.models.Subscription.Status",
    },
}

# A CSRF failure under /api/ is the JSON error shape (elsewhere Django's page).
CSRF_FAILURE_VIEW = "integrations.api.errors.csrf_failure"

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"

# Idempotency-Key records are kept this long (integrations.api.idempotency).
IDEMPOTENCY_TTL_SECONDS = env.int("IDEMPOTENCY_TTL_SECONDS", default=24 * 3600)
# A key still "in progress" after this long belongs to a request whose process died: a retry takes it over.
# Longer than any request runs (AI_DEADLINE_SECONDS, an upload to S3); below that, a live request could run twice.
IDEMPOTENCY_CLAIM_SECONDS = env.int("IDEMPOTENCY_CLAIM_SECONDS", default=600)

# Inbound API limits (django-ratelimit); the cache above counts them.
RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)

# --- I18N, static ---------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves what collectstatic gathered (the Dockerfile runs it):
# gzip/brotli copies and content-hashed names, so browsers cache them for a
# year. With DEBUG on (make run) it serves from the apps' folders unhashed.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="hub@localhost")

# --- Logging --------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_JSON = env_bool("LOG_JSON", not DEBUG)
# One `hub.access` line per request with its request id (the server's own access log cannot know it).
ACCESS_LOG = env_bool("ACCESS_LOG", True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "integrations.logging.RequestIdFilter"},
        # Beat's frequent housekeeping (heartbeat, sweepers) logs at DEBUG, not INFO.
        "routine_tasks": {
            "()": "config.log_filters.RoutineTasksAtDebug",
            "tasks": [
                "integrations.ping",
                "integrations.webhook_requeue_stale",
                "integrations.outbox_sweep",
                "integrations.call_log_handoff_sweep",
            ],
        },
    },
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
            "filters": ["request_id", "routine_tasks"],
            "formatter": "json" if LOG_JSON else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (DEBUG only) would print every django.* line a second time.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # httpx (and the OpenAI SDK's httpx2) log every request's full URL at INFO: one line per provider
        # call that the ProviderCall log already holds, and a query string may carry a credential.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        # The Stripe SDK logs two INFO lines per request (its URL, then its status): what the call's
        # ProviderCall row holds, and a few tenths of a millisecond of a worker's CPU per call (issue 11).
        "stripe": {"level": "WARNING"},
    },
}
