"""AI gateway overhead: /api/v1/ai/completions/ (gunicorn, PostgreSQL, Redis) vs the openai SDK called directly.

Both talk to the same local fake OpenAI-compatible server (stdlib, HTTP/1.1,
TCP_NODELAY, answering at once), in the same run, interleaved in rounds so
machine noise hits both sides alike. Reported: median and p99 latency per
completion and the difference (what the hub adds: auth, rate limits, budget,
breaker and limiter in Redis, call log and roll-ups in PostgreSQL), requests/s
with concurrent clients, and a streamed completion's time to first delta.

Runs on bench.settings (bench.common: its own database and Redis db), the hub
served as production serves it, ready once every worker answers /healthz.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wt_ai REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python bench/run.py bench_ai
"""

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path

from bench import common

TITLE = "AI gateway: added latency, throughput and streamed time to first byte"

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ROUNDS = int(os.environ.get("BENCH_AI_ROUNDS", "5"))
PER_ROUND = 60
CONCURRENCY = 8
THROUGHPUT_SECONDS = 4.0
# As production serves it (config/gunicorn.conf.py): uvicorn workers on config.asgi. Until 2026-12-03 this
# suite ran sync workers on config.wsgi, where a stream broke after its first delta (ai/views.py) and its
# time to first byte was that of an error event; BENCH_AI_WORKER_CLASS=sync measures WSGI again.
WORKERS = int(os.environ.get("BENCH_AI_WORKERS", "2"))
WORKER_CLASS = os.environ.get("BENCH_AI_WORKER_CLASS", "uvicorn_worker.UvicornWorker")
APP = "config.wsgi" if WORKER_CLASS in ("sync", "gthread") else "config.asgi"


# --- the fake provider (run in its own process) ------------------------------------


class FakeOpenAI(common.QuietHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        model = body.get("model", "gpt-4o-mini")
        usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
        if body.get("stream"):
            chunks = [
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                },
                *[
                    {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": model,
                        "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
                    }
                    for w in ("Hello", " from", " the", " fake")
                ],
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                },
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                },
            ]
            payload = ("".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()
            ctype = "text/event-stream"
        else:
            payload = json.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Hello from the fake"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            ).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", "req_bench")
        self.end_headers()
        self.wfile.write(payload)


def serve_fake(port):
    server = ThreadingHTTPServer(("127.0.0.1", port), FakeOpenAI)
    server.daemon_threads = True
    server.serve_forever()


# --- helpers -------------------------------------------------------------------------


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _ms(seconds):
    return f"{seconds * 1000:.2f}"


def _hub_env(fake_port):
    """What the hub's servers read at start on top of bench.settings: the fake provider as `openai`, one route,
    limits and a budget the bench never reaches."""
    return {
        "LOG_LEVEL": "WARNING",
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "AI_ROUTES_JSON": json.dumps({"bench": [["openai", "gpt-4o-mini"]]}),
        "AI_DEFAULT_TASK": "bench",
        "RATE_LIMITS_JSON": json.dumps(
            {"openai": {"requests": {"rate": 1000000, "burst": 1000000}, "tokens": {"rate": 1e9, "burst": 1e9}}}
        ),
        "AI_USER_RATE": "100000000/m",
        "AI_USER_MONTHLY_BUDGET_USD": "1000000",
        "DATABASE_POOL": "true" if APP == "config.asgi" else "false",  # as config/gunicorn.conf.py sets it
    }


# --- the measurement -----------------------------------------------------------------


def run():
    import httpx2
    import openai

    reason = common.setup()
    if reason:
        return reason
    _, token = common.api_token("bench-ai")
    fake_port = common.free_port()
    fake = subprocess.Popen(
        [PY, "-c", f"from bench.bench_ai import serve_fake; serve_fake({fake_port})"], cwd=ROOT, env=common._env()
    )
    try:
        common.wait_port(fake_port, what="the fake OpenAI server")
        # Ready once every worker answers /healthz (common.gunicorn), not once the port accepts.
        with (
            common.environ(_hub_env(fake_port)),
            common.gunicorn(workers=WORKERS, worker_class=WORKER_CLASS, app=f"{APP}:application") as server,
        ):
            measured = _measure(server.url, fake_port, token, httpx2, openai)
    finally:
        fake.terminate()
        try:
            fake.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fake.kill()
    return _report(**measured)


def _measure(hub_url, fake_port, token, httpx2, openai):
    """Both sides in interleaved rounds: latency, time to first delta, then throughput."""
    direct = openai.OpenAI(api_key="sk-bench", base_url=f"http://127.0.0.1:{fake_port}/v1", max_retries=0)
    hub = httpx2.Client(base_url=hub_url, headers={"Authorization": f"Token {token}"}, timeout=30)
    counter = iter(range(10**9))

    def body(stream=False):
        # A different prompt each time: no cache hits (and no temperature 0).
        return {
            "messages": [{"role": "user", "content": f"Say hello #{next(counter)}"}],
            "max_tokens": 16,
            "stream": stream,
        }

    def call_direct():
        msg = body()
        t = time.perf_counter()
        r = direct.chat.completions.create(model="gpt-4o-mini", messages=msg["messages"], max_completion_tokens=16)
        assert r.choices[0].message.content
        return time.perf_counter() - t

    def call_hub():
        t = time.perf_counter()
        r = hub.post("/api/v1/ai/completions/", json=body())
        assert r.status_code == 200, r.text
        return time.perf_counter() - t

    def ttfb_direct():
        msg = body()
        t = time.perf_counter()
        s = direct.chat.completions.create(
            model="gpt-4o-mini", messages=msg["messages"], stream=True, stream_options={"include_usage": True}
        )
        first = None
        for chunk in s:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t
        s.close()
        return first

    def ttfb_hub():
        t = time.perf_counter()
        first, last = None, None
        with hub.stream("POST", "/api/v1/ai/completions/", json=body(stream=True)) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("event: "):
                    last = line
                if first is None and line.startswith("event: delta"):
                    first = time.perf_counter() - t
        assert last == "event: done", f"the stream ended with {last!r}, not its done event"
        return first

    for fn in (call_direct, call_hub, ttfb_direct, ttfb_hub):  # warm pools, workers, DB connections
        for _ in range(10):
            fn()

    lat = {"direct": [], "hub": []}
    ttfb = {"direct": [], "hub": []}
    round_medians = {"direct": [], "hub": [], "added": []}
    for _ in range(ROUNDS):
        d = [call_direct() for _ in range(PER_ROUND)]
        h = [call_hub() for _ in range(PER_ROUND)]
        lat["direct"] += d
        lat["hub"] += h
        round_medians["direct"].append(statistics.median(d))
        round_medians["hub"].append(statistics.median(h))
        round_medians["added"].append(statistics.median(h) - statistics.median(d))
        ttfb["direct"] += [ttfb_direct() for _ in range(PER_ROUND // 2)]
        ttfb["hub"] += [ttfb_hub() for _ in range(PER_ROUND // 2)]

    def throughput(fn):
        stop = time.monotonic() + THROUGHPUT_SECONDS
        done = [0] * CONCURRENCY

        def worker(i):
            while time.monotonic() < stop:
                fn()
                done[i] += 1

        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(worker, range(CONCURRENCY)))
        return sum(done) / (time.monotonic() - started)

    rps_direct = throughput(call_direct)
    rps_hub = throughput(call_hub)
    hub.close()
    return {"lat": lat, "ttfb": ttfb, "round_medians": round_medians, "rps_direct": rps_direct, "rps_hub": rps_hub}


def _report(*, lat, ttfb, round_medians, rps_direct, rps_hub):
    md, mh = statistics.median(lat["direct"]), statistics.median(lat["hub"])
    pd, ph = _pct(lat["direct"], 99), _pct(lat["hub"], 99)
    td, th = statistics.median(ttfb["direct"]), statistics.median(ttfb["hub"])
    tpd, tph = _pct(ttfb["direct"], 99), _pct(ttfb["hub"], 99)
    n = ROUNDS * PER_ROUND
    return f"""Fake OpenAI-compatible server: stdlib `ThreadingHTTPServer`, HTTP/1.1 keep-alive, TCP_NODELAY, answers at once
(its own process). Hub: gunicorn ({WORKERS} {WORKER_CLASS} workers serving {APP}) on PostgreSQL + Redis, route `bench` = openai/gpt-4o-mini,
token auth; each completion writes a ProviderCall, the hourly and monthly roll-ups and an AiRequest row, and takes the
user rate limit, request and token buckets and breaker state in Redis. Direct: the `openai` SDK (max_retries=0) to the
same fake. Same run, {ROUNDS} interleaved rounds of {PER_ROUND} sequential calls each side ({n} per side); no cache hits.

| per completion (sequential) | direct SDK | through the hub | added by the hub |
|---|---|---|---|
| median latency ms | {_ms(md)} | {_ms(mh)} | {_ms(mh - md)} |
| p99 latency ms | {_ms(pd)} | {_ms(ph)} | {_ms(ph - pd)} |
| median of the {ROUNDS} round medians ms | {_ms(statistics.median(round_medians["direct"]))} | {_ms(statistics.median(round_medians["hub"]))} | {_ms(statistics.median(round_medians["added"]))} |

| throughput ({CONCURRENCY} concurrent clients, {THROUGHPUT_SECONDS:.0f} s each) | direct SDK | through the hub | hub / direct |
|---|---|---|---|
| requests/s | {rps_direct:.0f} | {rps_hub:.0f} | {rps_hub / rps_direct:.2f} |

| streamed completion, time to first delta | direct SDK | through the hub | added by the hub |
|---|---|---|---|
| median ms | {_ms(td)} | {_ms(th)} | {_ms(th - td)} |
| p99 ms | {_ms(tpd)} | {_ms(tph)} | {_ms(tph - tpd)} |

The client, the fake and gunicorn share this machine's cores, so requests/s is bounded by the machine as much as by
the hub; the added latency is the figure to watch.
"""
