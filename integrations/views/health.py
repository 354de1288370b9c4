"""/healthz: the process serves. /readyz: database, cache, broker and a live worker."""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app as celery_app
from integrations.selectors import heartbeat_age_seconds

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {}


def _check_cache():
    key = "readyz:probe"
    cache.set(key, "1", 10)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return the value just written")
    return {}


def _check_broker():
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {}


def _check_worker():
    age = heartbeat_age_seconds()
    if age is None:
        raise RuntimeError("no worker has answered yet")
    if age > settings.HEARTBEAT_MAX_AGE_SECONDS:
        raise RuntimeError(f"last worker heartbeat {age:.0f} s ago")
    return {"last_seen_seconds": round(age, 1)}


CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
    "worker": _check_worker,
}


def _is_staff(request):
    """Staff by session or API token (the view is plain Django, so DRF's authentication is asked directly).

    Both are looked up in the database: while it is down nobody can be told apart, and the caller gets the
    anonymous answer (503 naming `database`), never a 500 because it sent a session cookie or a token.
    """
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.request import Request

    from integrations.auth.authentication import ApiTokenAuthentication

    try:
        if request.user.is_authenticated:
            return request.user.is_staff
        found = ApiTokenAuthentication().authenticate(Request(request))
    except (AuthenticationFailed, DatabaseError):
        return False
    return bool(found and found[0].is_staff)


@never_cache
@require_GET
def readyz(request):
    """Anonymous callers learn only which checks failed; the reasons (hosts, ports, errors) go to the log and to staff."""
    results, failed = {}, []
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            info = check()
            results[name] = {"ok": True, **info}
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure by name
            failed.append(name)
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            logger.warning("readiness check %s failed: %s", name, results[name]["error"])
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    body = {"status": "ok" if not failed else "unavailable", "failed": failed}
    if _is_staff(request):
        body["checks"] = results
    return JsonResponse(body, status=200 if not failed else 503)
