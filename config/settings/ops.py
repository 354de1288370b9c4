"""Operational endpoints: who may read /metrics, and Prometheus multiprocess mode."""

import os

from ._env import VAR_DIR, env

# /metrics answers a request that carries `Authorization: Bearer <METRICS_TOKEN>`
# or comes from one of METRICS_ALLOWED_NETWORKS (CIDRs, e.g. 10.0.0.0/8); with
# neither set it answers nobody. The client address is resolved as for login
# throttling (TRUSTED_PROXY_COUNT), so a proxy on localhost does not open it.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])

# Every web worker (and every Celery worker on the same host) writes its
# counters to files in this directory and /metrics adds them up; without it
# each worker would report only its own share. Empty turns it off. It must be
# in the environment before prometheus_client is first imported, which the
# settings are (Django loads them before any app).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
if PROMETHEUS_MULTIPROC_DIR:
    os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
