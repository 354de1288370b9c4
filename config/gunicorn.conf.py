"""The one web-server configuration: `gunicorn -c config/gunicorn.conf.py config.asgi:application`.

`make run` (Procfile.dev), the Dockerfile, docker-compose.yml and deploy/k8s/
all run exactly that command; only the environment differs between them:

    HOST, PORT          where to listen (127.0.0.1:8000; the image sets HOST=0.0.0.0)
    WEB_CONCURRENCY     worker processes (make run uses 1: its rate-limit cache is per process)
    GUNICORN_TIMEOUT    seconds a worker may go silent before it is replaced
    FORWARDED_ALLOW_IPS proxies trusted for X-Forwarded-Proto / X-Forwarded-For (gunicorn reads it itself)

Gunicorn is the process manager (signals, restarts, max_requests); each worker
runs uvicorn (uvloop + httptools), so the web tier speaks ASGI and an AI
stream that lasts a minute holds a coroutine, not a process (DESIGN.md, "One
path for every outbound call"). Measured against granian, the other ASGI server
issue 11 named, serving the same config.asgi (bench_ai_serving's "hub on granian"
row, bench_inbox's "ASGI: granian x 2"; bench/RESULTS.md): neither is ahead, on
the AI path (added latency, 256 streams, probes) or on webhook acks (CPU per
delivery), by more than runs swing. The hub stays on this one, whose master
imports and freezes the app once for every worker (preload, below), recycles
workers by request count, and trusts proxies' forwarded headers only from
FORWARDED_ALLOW_IPS.
"""

import os


def _env(name, default):
    # An empty value (`HOST=` copied from .env.example) means "unset", not "bind to nothing".
    return os.environ.get(name) or default


# Set in the environment before the app loads (gunicorn applies raw_env before the
# preload below), read by config/settings: one psycopg pool per worker instead of
# one connection per request thread (config/settings/base.py). An explicit
# DATABASE_POOL in the environment wins.
raw_env = [] if "DATABASE_POOL" in os.environ else ["DATABASE_POOL=true"]

bind = [f"{_env('HOST', '127.0.0.1')}:{_env('PORT', '8000')}"]
# One event loop per core serves hundreds of streams; more workers than cores
# only adds memory and context switches (bench_serving).
workers = int(_env("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn_worker.UvicornWorker"

# Import Django and every provider SDK once in the arbiter (config/warmup.py also
# dry-runs the AI SDKs and freezes the heap): a fresh worker forks ready, so the
# first request is not the slow one and a busy machine does not trip the timeout
# while a worker is still importing (DESIGN.md pitfalls). Each worker then warms
# its own connections at ASGI lifespan startup (config/asgi.py).
preload_app = _env("GUNICORN_PRELOAD", "true").lower() not in ("0", "false", "no")

# Recycle workers now and then so a slow leak never grows without bound; the
# jitter keeps all workers from restarting at the same moment.
max_requests = int(_env("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(_env("GUNICORN_MAX_REQUESTS_JITTER", "200"))

# For uvicorn workers this is the heartbeat to the arbiter, not a request
# deadline: the event loop notifies gunicorn while long streams are open.
timeout = int(_env("GUNICORN_TIMEOUT", "30"))
# A recycled or restarted worker stops accepting and lets open streams finish:
# as long as the AI deadline (AI_DEADLINE_SECONDS), so recycling cuts no answer.
graceful_timeout = int(_env("GUNICORN_GRACEFUL_TIMEOUT", "90"))
# Seconds an idle keep-alive connection stays open. Behind a load balancer that keeps its own connections to
# the hub longer (an AWS ALB: 60 s by default), set it above that, so the balancer, not the hub, closes them
# and never sends a request down a connection the hub is closing (README "Keep-alive behind a proxy").
keepalive = int(_env("GUNICORN_KEEPALIVE", "5"))

# Gunicorn 23+ opens a control socket at one fixed path per user
# (~/.gunicorn/gunicorn.ctl): two servers on one machine would fight over it,
# and nothing here uses it.
control_socket_disable = True

# The hub writes one access line per request itself, with its request id
# (logger hub.access); the server's own line would be a second, id-less copy.
accesslog = _env("GUNICORN_ACCESS_LOG", None)
errorlog = "-"
loglevel = _env("GUNICORN_LOG_LEVEL", "info")


# Prometheus multiprocess mode (integrations.gunicorn_hooks): the master empties the samples
# directory before any worker starts, so a restart never adds the last run's counts in, and a dead
# worker's live gauges are dropped. Imported when called: by then gunicorn has put the project on sys.path.
def on_starting(server):
    from integrations.gunicorn_hooks import on_starting as empty_samples

    empty_samples(server)


def child_exit(server, worker):
    from integrations.gunicorn_hooks import child_exit as drop_gauges

    drop_gauges(server, worker)
