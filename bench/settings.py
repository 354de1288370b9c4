"""Settings for the benchmarks: production settings on the bench's own PostgreSQL and Redis.

Like config/test_settings.py this only fills in defaults, so every value can
still come from the environment. The benchmarks use their own database
(`hub_bench`, created by bench.common.ensure_database) and Redis db 9, so a run
never touches a developer's data or a test run. Stripe is configured with a
fake key and a limit far above what a benchmark takes: the gateway suite calls
an in-process fake function, never the network.

Only these settings install `bench.hookapp` (a signed test webhook for the
inbox benchmark); production URLs and INSTALLED_APPS never see it.
"""

import os

os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdef")
# A fixed bench-only key (never used outside benchmarks).
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "q8yF3v2bJm0nN4r6rU1oYbq2j8c8V2mZr1aXlN0l0Ws=")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hub_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("CACHE_KEY_PREFIX", "hubbench")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("STRIPE_SECRET_KEY", "sk_test_bench")
os.environ.setdefault("HUBTEST_WEBHOOK_SECRET", "whsec_test_0123456789")
# Per-request log lines are part of what production pays for; keep INFO unless told otherwise.
os.environ.setdefault("LOG_LEVEL", "INFO")

from config.settings import *  # noqa: E402,F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench.hookapp"]  # noqa: F405
# The gateway suite measures the limiter's cost, not its waiting: a bucket it never empties.
RATE_LIMITS = {**RATE_LIMITS, "stripe": {"requests": {"rate": 1_000_000, "burst": 1_000_000}}}  # noqa: F405
# The secret bench.hookapp's verifier checks (tests/integrations/webhook_provider.py's scheme).
HUBTEST_WEBHOOK_SECRET = env.str("HUBTEST_WEBHOOK_SECRET")  # noqa: F405
# Pages are rendered in-process without `collectstatic` (as in the tests): plain static URLs, no manifest.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
