"""The one web-server configuration (Dockerfile, docker-compose.yml, Procfile, `make`):

    gunicorn -c config/gunicorn.conf.py config.asgi:application

Uvicorn workers under gunicorn: gunicorn supervises (restarts a dead worker,
recycles workers, graceful reloads on HUP), each worker runs one asyncio loop
(uvloop + httptools) serving many connections, so a 60 s AI stream costs a
coroutine rather than a whole worker. Measured against granian and sync
workers in bench/bench_serving.py (bench/RESULTS.md).

Every value can be overridden from the environment (names below) or on the
command line.
"""

import os


def _int(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


# Read by config/settings when the app loads (below, preload): a connection pool
# per worker instead of one connection per request thread (see config/settings/base.py).
os.environ.setdefault("DATABASE_POOL", "true")

bind = os.environ.get("WEB_BIND") or f"0.0.0.0:{_int('PORT', 8000)}"
worker_class = "uvicorn_worker.UvicornWorker"
# One event loop per core: an async worker is CPU-bound, not blocked on I/O.
workers = _int("WEB_CONCURRENCY", max(2, os.cpu_count() or 1))

# Import the app (and every provider SDK, see config/warmup.py) once in the
# master before forking: workers start warm, the first request costs what the
# hundredth does, and a busy machine cannot push a cold worker past `timeout`.
preload_app = os.environ.get("WEB_PRELOAD", "true").lower() not in ("0", "false", "no")

# Recycle workers so a slow leak in any library cannot grow without bound; the
# jitter keeps workers from all restarting at the same moment.
max_requests = _int("WEB_MAX_REQUESTS", 5000)
max_requests_jitter = _int("WEB_MAX_REQUESTS_JITTER", 500)

# A worker whose loop stops answering gunicorn's heartbeat for this long is
# killed. Streams do not count: they are awaits, the loop keeps beating.
timeout = _int("WEB_TIMEOUT", 30)
# On restart or recycle, open streams get this long to finish (the AI deadline).
graceful_timeout = _int("WEB_GRACEFUL_TIMEOUT", 90)
keepalive = _int("WEB_KEEPALIVE", 5)

# The hub writes its own access line with the request id (hub.access logger).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
# gunicorn's control socket has one default path per user: two servers on one
# machine (a bench beside a dev server) would fight over it. Off unless asked for.
if os.environ.get("WEB_CONTROL_SOCKET"):
    control_socket = os.environ["WEB_CONTROL_SOCKET"]
else:
    control_socket_disable = True

# Behind a proxy, set FORWARDED_ALLOW_IPS to its address so X-Forwarded-* is trusted.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
