"""Settings for pytest: production settings with fixed test secrets.

DATABASE_URL and REDIS_URL pass through, so `.ci/run` tests on the real
PostgreSQL and Redis; without them tests run on SQLite and local memory.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
# A fixed test key (never used outside tests).
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "q8yF3v2bJm0nN4r6rU1oYbq2j8c8V2mZr1aXlN0l0Ws=")
os.environ.setdefault("CACHE_KEY_PREFIX", "hubtest")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")

from config.settings import *  # noqa: E402,F403

SECURE_SSL_REDIRECT = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOG_JSON = False
LOGGING["handlers"]["console"]["formatter"] = "plain"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
MEDIA_ROOT = VAR_DIR / "test-media"  # noqa: F405
# The in-memory broker polls once a second by default; workers started in tests should not wait.
CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.01}
# Tests run with DEBUG off and no collectstatic: plain storage, so admin pages
# render without a manifest (the image's collectstatic checks the real one).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's shared-cache in-memory database: tests that run the ASGI server, the call-log
    # writer or outbox leases use threads, and shared-cache SQLite answers "database table is locked" at
    # once to a second connection (no busy timeout), where a file in WAL mode waits its turn.
    VAR_DIR.mkdir(exist_ok=True)  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}  # noqa: F405
