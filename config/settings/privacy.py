"""GDPR export and erasure (the privacy app)."""

from pathlib import Path

from ._env import VAR_DIR, env
from .celery import CELERY_BEAT_SCHEDULE

# Exports: one zip per request, kept this many days, behind a signed link valid this long.
PRIVACY_EXPORT_RETENTION_DAYS = env.int("PRIVACY_EXPORT_RETENTION_DAYS", default=7)
PRIVACY_EXPORT_LINK_TTL_SECONDS = env.int("PRIVACY_EXPORT_LINK_TTL_SECONDS", default=24 * 3600)
# Where the zips go: S3_BUCKET under PRIVACY_EXPORT_PREFIX (private, SSE as configured); without a bucket,
# the filesystem under PRIVACY_EXPORT_ROOT. Never a public location: links are signed.
PRIVACY_EXPORT_PREFIX = env.str("PRIVACY_EXPORT_PREFIX", default="privacy-exports/")
PRIVACY_EXPORT_ROOT = Path(env.str("PRIVACY_EXPORT_ROOT", default="") or VAR_DIR / "privacy-exports")
# The zip is written to a temporary file here first (default: the system's temp dir).
PRIVACY_EXPORT_TMP_DIR = env.str("PRIVACY_EXPORT_TMP_DIR", default="") or None
# Erasure: deactivated at once, deleted after this many days (staff can expedite).
PRIVACY_ERASE_GRACE_DAYS = env.int("PRIVACY_ERASE_GRACE_DAYS", default=7)
# A provider deletion that keeps failing is retried this many times (backoff up to the cap) before
# the erasure is marked failed and staff get an alert naming what is left.
PRIVACY_ERASE_MAX_ATTEMPTS = env.int("PRIVACY_ERASE_MAX_ATTEMPTS", default=10)
PRIVACY_ERASE_RETRY_BASE_SECONDS = env.int("PRIVACY_ERASE_RETRY_BASE_SECONDS", default=60)
PRIVACY_ERASE_RETRY_MAX_SECONDS = env.int("PRIVACY_ERASE_RETRY_MAX_SECONDS", default=6 * 3600)
# How long after an erasure a late webhook naming the user is still recognised (by a keyed digest of the
# user's provider ids and email) and redacted once processed. Stripe retries a delivery for 3 days.
PRIVACY_LATE_WEBHOOK_DAYS = env.int("PRIVACY_LATE_WEBHOOK_DAYS", default=30)

CELERY_BEAT_SCHEDULE["privacy.sweep"] = {"task": "privacy.sweep", "schedule": 600.0}
