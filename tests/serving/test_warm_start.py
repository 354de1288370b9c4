"""A fresh web server answers its first request about as fast as its twentieth (#11.5).

Starts the production server exactly as deployed (`gunicorn -c config/gunicorn.conf.py
config.asgi:application`, one uvicorn worker, on a Unix socket) against the test
database, with a stdlib fake OpenAI-compatible provider in its own process, and compares the first
authenticated completion with the median of the next twenty. Without preloading,
the first request paid for importing every provider SDK (seconds of CPU); without each
worker's own warm-up (config.warmup.warm_loop) it paid ~70 ms against ~10, and
before that warm-up ran an SDK dry run of its own, 16-22 ms against ~6 (at the 3x
limit on a loaded machine). A failure names the worker's own durations beside the
client's, so a stall of the machine is told apart from a cold worker.
"""

import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from integrations.auth.tokens import token_create
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
FAKE_PROVIDER = Path(__file__).with_name("fake_openai.py")
FIRST_TO_MEDIAN_MAX = 3.0

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provider():
    # In a process of its own (fake_openai.py says why); it prints its port once it listens.
    proc = subprocess.Popen([sys.executable, str(FAKE_PROVIDER)], stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit(), f"the fake provider did not start (exit {proc.poll()})"
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _start_server(tmp_path, provider_url):
    sock = tmp_path / "web.sock"
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
        "ALLOWED_HOSTS": "localhost",
        "SECURE_SSL_REDIRECT": "false",
        "OPENAI_API_KEY": "sk-warm-test",
        "OPENAI_BASE_URL": provider_url,
        "AI_ROUTES_JSON": json.dumps({"simple": [["openai", "gpt-4o-mini"]]}),
        "RATELIMIT_ENABLE": "false",
        "WEB_CONCURRENCY": "1",
        "VAR_DIR": str(tmp_path),
    }
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 - closed by the caller's finally
    proc = subprocess.Popen(
        [str(GUNICORN), "-c", "config/gunicorn.conf.py", "--bind", f"unix:{sock}", "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # Ready when the worker says so; polling a URL would itself be the first request.
    deadline = time.monotonic() + 120
    while b"Application startup complete" not in (tmp_path / "web.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("server did not start:\n" + (tmp_path / "web.log").read_text()[-3000:])
        time.sleep(0.1)
    return proc, log, sock


def _warmed_before_fork(tmp_path):
    log = (tmp_path / "web.log").read_text()
    warmed, booted = log.find("warm: modules imported"), log.find("Booting worker")
    return 0 <= warmed < booted


def _served(tmp_path, count=5):
    """The worker's own access-log durations (ms) of its first `count` answered completions: a first request
    slow in the client's figure but not in these was slowed outside the hub (the machine, the client)."""
    lines = (tmp_path / "web.log").read_text().splitlines()
    served = [
        json.loads(line) for line in lines if line.startswith("{") and '"POST /api/v1/ai/completions/ 200"' in line
    ]
    return [entry["duration_ms"] for entry in served[:count]]


def _first_and_median(tmp_path, provider, key, later=20):
    proc, log, sock = _start_server(tmp_path, provider)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://localhost") as client:

            def timed():
                started = time.perf_counter()
                resp = client.post(
                    "/api/v1/ai/completions/",
                    json={"messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Token {key}"},
                )
                elapsed = time.perf_counter() - started
                assert resp.status_code == 200, resp.text
                return elapsed

            # The client is this (test) process: after thousands of tests its heap is large, and a full
            # garbage collection here stalled one request by 50+ ms. Time the server, not that.
            gc.collect()
            gc.disable()
            try:
                first = timed()
                rest = [timed() for _ in range(later)]
            finally:
                gc.enable()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return first, statistics.median(rest) if rest else None


def test_the_first_request_to_a_fresh_server_costs_what_later_ones_do(tmp_path, provider):
    """Three fresh servers, the best of them: on a shared machine the scheduler can stall
    any one request (a best of two was estimated to fail about 4 % of runs that way,
    with the rest of the suite running beside it), while a cold worker (seconds of imports)
    is slow on every start."""
    user = UserFactory()
    _, key = token_create(user=user, name="warm", expires_in_days=1)
    # A user's first completion ever writes what their later ones read, whichever worker serves it:
    # their month's spend row, their token and limits in the shared cache (~30 ms on this path).
    # That is the user's cost, not a cold worker's, so it is paid on a server that is not measured.
    primer = tmp_path / "first-use"
    primer.mkdir()
    _first_and_median(primer, provider, key, later=0)
    # Each worker's own warm-up would also cover the first request, taking seconds to start instead (an SDK
    # dry run builds what the master's warm() built once): the master must have warmed before forking.
    assert _warmed_before_fork(primer), "config.warmup.warm() did not run in gunicorn's master (preload_app)"
    seen = []
    for attempt in range(3):
        run_dir = tmp_path / f"run{attempt}"
        run_dir.mkdir()
        first, median = _first_and_median(run_dir, provider, key)
        seen.append(
            f"first {first * 1000:.1f} ms, median {median * 1000:.1f} ms (the worker's own log: first five "
            f"{', '.join(f'{ms:g}' for ms in _served(run_dir))} ms)"
        )
        if first <= FIRST_TO_MEDIAN_MAX * median:
            return
    raise AssertionError("the first request cost more than 3x the median of the next 20: " + "; ".join(seen))
