"""Helpers the benchmark suites share: Django on the bench settings, the bench
database, gunicorn and Celery as child processes, where the CPU went, and
percentiles.

Every suite calls `setup()` first; it answers a markdown sentence instead of
raising when PostgreSQL or Redis is not reachable, so `make bench` on a
machine without them still writes the other suites' figures.
"""

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from tests.local_http import QuietHandler  # noqa: F401 - the stand-in providers' handler (bench_ai, _travel, _stripe_events)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SETTINGS = "bench.settings"
PYTHON = sys.executable
BIN = Path(PYTHON).parent

_ready = None


def _env():
    """The environment for this process and its children: the bench settings, whatever the shell exported.

    `make bench` exports DJANGO_SETTINGS_MODULE=config.settings for every
    target; the suites must run on bench.settings (own database, hookapp).
    """
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    return env


def _database_conf():
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import importlib

    return importlib.import_module(SETTINGS).DATABASES["default"]


def ensure_database():
    """Create the bench database if it does not exist yet (PostgreSQL only)."""
    import psycopg

    conf = _database_conf()
    if "postgresql" not in conf["ENGINE"]:
        raise RuntimeError(f"the benchmarks need PostgreSQL; DATABASE_URL points at {conf['ENGINE']}")
    params = {
        "host": conf.get("HOST") or "127.0.0.1",
        "port": conf.get("PORT") or 5432,
        "user": conf.get("USER") or "postgres",
        "password": conf.get("PASSWORD") or None,
        "dbname": "postgres",
        "connect_timeout": 3,
        "autocommit": True,
    }
    with psycopg.connect(**params) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [conf["NAME"]]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{conf["NAME"]}"')


def setup():
    """Django on bench.settings with a migrated bench database; None when ready, else why not (markdown)."""
    global _ready
    if _ready is not None:
        return _ready or None
    try:
        ensure_database()
    except Exception as exc:  # noqa: BLE001 - reported in RESULTS.md instead of a traceback
        _ready = f"Skipped: PostgreSQL is not reachable ({exc})."
        return _ready
    import django
    from django.conf import settings

    django.setup()
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _ready = f"Skipped: Redis at {settings.REDIS_URL} does not answer ({exc})."
        return _ready
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    _ready = ""
    return None


def api_token(username):
    """(user, a new API token for it): the bench's client of the hub's API, created once per name."""
    from django.contrib.auth import get_user_model

    from integrations.auth.tokens import token_create

    user, _ = get_user_model().objects.get_or_create(username=username)
    return user, token_create(user=user, name="bench", expires_in_days=1)[1]


def where():
    """One line naming the servers a suite ran against (no credentials)."""
    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        pg = cur.fetchone()[0]
        cur.execute("SHOW synchronous_commit")
        sync = cur.fetchone()[0]
    redis_url = settings.REDIS_URL.rsplit("@", 1)[-1]
    return (
        f"PostgreSQL {pg.split()[0]} at {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']} "
        f"(synchronous_commit={sync}), Redis {redis_url}"
    )


def machine_load():
    """How busy the machine was (other processes share its cores): load average and CPU pressure."""
    parts = []
    try:
        parts.append("load average " + " / ".join(Path("/proc/loadavg").read_text().split()[:3]))
    except OSError:
        pass
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        parts.append(f"CPU pressure {some[1].split('=')[1]} % (avg10)")
    except (OSError, IndexError):
        pass
    return ", ".join(parts) or "load unknown"


def redis_delete_prefix(prefix):
    """Delete this bench's keys (never FLUSHDB: REDIS_URL may be pointed at a shared db)."""
    from integrations.redis import get_client

    client = get_client()
    batch = []
    for name in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(name)
        if len(batch) >= 500:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)


# --- Numbers ---------------------------------------------------------------


def percentile(values, pct):
    """Linear-interpolated percentile (numpy's default) of a non-empty sequence."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    pos = (len(data) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values):
    return statistics.median(values)


def table(headers, rows):
    """A markdown table; cells are formatted by the caller."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# --- Where the CPU goes --------------------------------------------------------


def _proc_stats():
    """{pid: (comm, process group, utime + stime in clock ticks)} for every process we can read."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
        out[int(entry.name)] = (comm, int(fields[2]), int(fields[11]) + int(fields[12]))
    return out


def _busy_ticks():
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle


class CpuMeter:
    """CPU seconds spent between start() and stop() by gunicorn, Celery, PostgreSQL, Redis, this process, and the rest.

    Reads /proc (Linux): our children by process group, the servers by name;
    "rest of the machine" is everything else that ran meanwhile.
    """

    def __init__(self, groups):
        self.groups = groups  # {label: process group id}
        self.hz = os.sysconf("SC_CLK_TCK")

    def _classify(self, stats):
        totals = Counter()
        me = os.getpid()
        for pid, (comm, pgrp, ticks) in stats.items():
            label = next((name for name, group in self.groups.items() if pgrp == group), None)
            if label is None:
                if pid == me:
                    label = "load generator"
                elif comm.startswith("postgres"):
                    label = "PostgreSQL"
                elif comm.startswith("redis-server"):
                    label = "Redis"
                else:
                    continue
            totals[label] += ticks
        return totals

    def start(self):
        self._before = _proc_stats()
        self._busy = _busy_ticks()
        return self

    def stop(self):
        after = _proc_stats()
        busy = _busy_ticks() - self._busy
        # Processes that started or ended meanwhile count from zero / are lost; both are small here.
        before = {pid: v for pid, v in self._before.items() if pid in after and after[pid][0] == v[0]}
        delta = {pid: (c, g, t - (before[pid][2] if pid in before else 0)) for pid, (c, g, t) in after.items()}
        totals = self._classify(delta)
        totals["rest of the machine"] = max(0, busy - sum(totals.values()))
        return {label: ticks / self.hz for label, ticks in totals.items()}


# --- Child processes ---------------------------------------------------------


_handed_out = set()


def free_port():
    """A free port on 127.0.0.1: within BENCH_PORT_RANGE ("18300-18399") when set (a shared machine hands each
    engineer a range), else any the kernel picks."""
    low, _, high = os.environ.get("BENCH_PORT_RANGE", "").partition("-")
    candidates = range(int(low), int(high) + 1) if low and high else [0]
    for port in candidates:
        if port in _handed_out:
            continue  # given to a server that may not have bound it yet
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port:
                _handed_out.add(port)
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in BENCH_PORT_RANGE={os.environ['BENCH_PORT_RANGE']}")


def wait_port(port, timeout=30, what=None):
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what or 'nothing'} did not listen on 127.0.0.1:{port} within {timeout} s")


class Child:
    """A child process in its own process group, its output in a log file; stop() ends the group."""

    def __init__(self, name, argv, logdir, *, env=None, unset=(), cwd=ROOT):
        """`env`: variables set on top of the bench environment (e.g. a provider's base URL); `unset`: removed;
        `cwd`: where it runs (another checkout's server, bench/ab_ai_serving.py)."""
        self.name = name
        self.log_path = Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={k: v for k, v in {**_env(), **(env or {})}.items() if k not in unset},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            # The group is ours (start_new_session): the master and the workers it forked.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Workers of a master that died first may linger in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


@contextlib.contextmanager
def environ(values):
    """os.environ with `values` set for the block (a server started inside reads them), then as it was."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def gunicorn(*, workers=2, worker_class="sync", threads=1, ready_timeout=120, port=None, app="config.wsgi:application"):
    """Serve `app` (config.wsgi; config.asgi with worker_class="uvicorn_worker.UvicornWorker", as production runs)
    on 127.0.0.1 with the bench settings; once /healthz answers, yields .url and .pgid.

    `port`: a fixed port (a shared machine may hand each engineer a range); default any free one."""
    port = port or free_port()
    argv = [
        str(BIN / "gunicorn"),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--timeout",
        "60",
        "--log-level",
        "warning",
    ]
    with _serving("gunicorn", argv, port, workers, ready_timeout) as server:
        yield server


@contextlib.contextmanager
def _serving(name, argv, port, workers, ready_timeout):
    """Run a web server's `argv` on `port` until every one of its `workers` answers /healthz; yield .url, .pgid."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as logdir:
        child = Child(name, argv, logdir)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_http(child, url + "/healthz", ready_timeout, hits=workers * 4)
            yield SimpleNamespace(url=url, pgid=child.proc.pid)
        finally:
            child.stop()


def granian_argv(port, *, workers=2, app="config.asgi:application"):
    """The granian command for `app` on 127.0.0.1:`port`: ASGI, `workers` processes, uvloop (as uvicorn's)."""
    return [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        app,
    ]


@contextlib.contextmanager
def granian(*, workers=2, ready_timeout=120, port=None, app="config.asgi:application"):
    """Serve `app` over ASGI with granian (a Rust HTTP server; a bench tool, requirements-dev.txt) as gunicorn()
    does with uvicorn workers: `workers` processes, uvloop, the same bench settings; yields .url and .pgid.

    For measuring the server against the production one (config/gunicorn.conf.py), not a way the hub is served."""
    port = port or free_port()
    with _serving("granian", granian_argv(port, workers=workers, app=app), port, workers, ready_timeout) as server:
        yield server


def _wait_http(child, url, timeout, hits=1):
    """Wait until `url` answers 200 `hits` times in a row (so every worker has imported the app)."""
    deadline = time.monotonic() + timeout
    ok = 0
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                ok = ok + 1 if resp.status == 200 else 0
        except OSError:
            ok = 0
            time.sleep(0.1)
            continue
        if ok >= hits:
            return
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout} s:\n{child.log_tail()}")


@contextlib.contextmanager
def celery_worker(
    *, concurrency=2, queues="default", loglevel="INFO", pool="prefork", ready_timeout=60, nice=0, hostname=None
):
    """A Celery worker (prefork) on the bench settings; yields .ready_s (seconds until ready) and .pgid.

    `nice` > 0 runs it below the web server's CPU priority (acks first, processing catches up).
    BENCH_CELERY_PREFETCH (a number) runs it with that --prefetch-multiplier instead of the settings' 1.

    Ready means the worker stamped its WorkerHeartbeat row (integrations.signals
    does on worker_ready), the hub's own signal that a worker is consuming.
    """
    from integrations.models import WorkerHeartbeat

    hostname = hostname or f"bench-{os.getpid()}@{socket.gethostname()}"
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()
    argv = [
        *(["nice", "-n", str(nice)] if nice else []),
        str(BIN / "celery"),
        "-A",
        "config",
        "worker",
        "--loglevel",
        loglevel,
        "--concurrency",
        str(concurrency),
        "--queues",
        queues,
        "--hostname",
        hostname,
        "--pool",
        pool,
        "--without-gossip",
        "--without-mingle",
        *(
            ["--prefetch-multiplier", os.environ["BENCH_CELERY_PREFETCH"]]
            if os.environ.get("BENCH_CELERY_PREFETCH")
            else []
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as logdir:
        started = time.monotonic()
        child = Child("celery", argv, logdir)
        try:
            deadline = started + ready_timeout
            while not WorkerHeartbeat.objects.filter(hostname=hostname).exists():
                child.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Celery worker was not ready within {ready_timeout} s:\n{child.log_tail()}")
                time.sleep(0.05)
            yield SimpleNamespace(ready_s=time.monotonic() - started, pgid=child.proc.pid)
        finally:
            child.stop()
