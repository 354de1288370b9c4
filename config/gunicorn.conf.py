"""The one web-server configuration: `gunicorn -c config/gunicorn.conf.py config.asgi:application`.

`make run` (Procfile.dev), the Dockerfile, docker-compose.yml and deploy/k8s/
all run exactly that command; only the environment differs between them:

    HOST, PORT          where to listen (127.0.0.1:8000; the image sets HOST=0.0.0.0)
    WEB_CONCURRENCY     worker processes (make run uses 1: its rate-limit cache is per process)
    GUNICORN_TIMEOUT    seconds a worker may go silent before it is replaced
    FORWARDED_ALLOW_IPS proxies trusted for X-Forwarded-Proto / X-Forwarded-For (gunicorn reads it itself)

Gunicorn is the process manager (signals, restarts, max_requests); each worker
runs uvicorn, so the web tier speaks ASGI and an AI stream that lasts a minute
holds a coroutine, not a process (DESIGN.md, "One path for every outbound call").
"""

import os


def _env(name, default):
    # An empty value (`HOST=` copied from .env.example) means "unset", not "bind to nothing".
    return os.environ.get(name) or default


bind = [f"{_env('HOST', '127.0.0.1')}:{_env('PORT', '8000')}"]
workers = int(_env("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn_worker.UvicornWorker"

# Import Django and every provider SDK once in the arbiter: a fresh worker
# forks ready, so the first request is not the slow one and a busy machine does
# not trip the timeout while a worker is still importing (DESIGN.md pitfalls).
preload_app = True

# Recycle workers now and then so a slow leak never grows without bound; the
# jitter keeps all workers from restarting at the same moment.
max_requests = int(_env("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(_env("GUNICORN_MAX_REQUESTS_JITTER", "200"))

# For uvicorn workers this is the heartbeat to the arbiter, not a request
# deadline: the event loop notifies gunicorn while long streams are open.
timeout = int(_env("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(_env("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5

# Gunicorn 23+ opens a control socket at one fixed path per user
# (~/.gunicorn/gunicorn.ctl): two servers on one machine would fight over it,
# and nothing here uses it.
control_socket_disable = True

# Logs to stdout/stderr for the container runtime or the terminal to collect.
accesslog = "-"
errorlog = "-"
loglevel = _env("GUNICORN_LOG_LEVEL", "info")
