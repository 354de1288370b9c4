"""AI serving side by side with LiteLLM's proxy: long streams that must not block, and added latency.

Both servers run as deployed on this machine (the hub: `gunicorn -c config/gunicorn.conf.py
config.asgi:application`, 2 uvicorn workers, PostgreSQL + Redis; LiteLLM: its proxy CLI, 2
workers, installed by this suite into a throwaway venv under var/bench/) in front of the same
fake OpenAI-compatible provider (bench/fake_llm.py, asyncio, one process). In one run:

1. Streams: BENCH_STREAMS (256) concurrent streamed completions, each 20 chunks over
   BENCH_STREAM_SECONDS (20 s); every stream's time against that ideal, while a probe polls
   the health URL and an authenticated GET every 0.2 s from its own process (p50 / p99 / max).
2. Non-streamed: sequential completions through the hub, through LiteLLM and straight to the
   fake provider, interleaved in rounds; added latency = median through a server - median
   direct; the goal is the hub's at most half LiteLLM's. Beside them the floor
   (bench/floor_llm.py: the same SDK call behind a Redis token check, no framework), to show
   what of the added latency any Python proxy on this machine pays.
3. With BENCH_AI_PROFILE=1, a py-spy profile of the hub's workers during (2), summarised as
   the parts of a completion and the components where the workers' CPU goes.

Where granian is installed (requirements-dev.txt) the hub also runs on it, as the target "hub on granian" beside
the production server (issue 11: measure the ASGI servers and choose); BENCH_AI_GRANIAN=0 leaves it out.

BENCH_AI_SERVING_PARTS=nonstream runs only (2) (and 3), e.g. to A/B a change to the
non-streamed path in a minute instead of the streams' few; the default, all, runs both.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        BENCH_PORTS=18200-18299 .venv/bin/python bench/run.py ai_serving
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import common

TITLE = "AI serving: 256 concurrent 20 s streams and non-streamed added latency, hub vs LiteLLM proxy"

STREAMS = int(os.environ.get("BENCH_STREAMS", "256"))
STREAM_SECONDS = float(os.environ.get("BENCH_STREAM_SECONDS", "20"))
ROUNDS = int(os.environ.get("BENCH_AI_ROUNDS", "5"))
PER_ROUND = int(os.environ.get("BENCH_AI_PER_ROUND", "40"))
PROBE_EVERY = 0.2
PARTS = os.environ.get("BENCH_AI_SERVING_PARTS", "all")  # "nonstream": the non-streamed rounds only
LITELLM_VERSION = "1.106.12"  # later releases' [proxy] extra needs packages not published on PyPI
LITELLM_VENV = common.ROOT / "var" / "bench" / "litellm-venv"
MASTER_KEY = "sk-bench-master-key"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def _ports():
    """Ports for the servers: from BENCH_PORTS (a range agreed for this machine), else any free ones."""
    low, _, high = os.environ.get("BENCH_PORTS", "").partition("-")
    if low and high:
        return iter(range(int(low) + 40, int(high) + 1))  # the other suites start at the range's bottom
    return iter(common.free_port() for _ in range(100))


def _wait(url, child, timeout=180, headers=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            if httpx.get(url, timeout=5, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout} s:\n{child.log_tail()}")


# --- LiteLLM in its own venv ---------------------------------------------------------


def _litellm_installed():
    """The LiteLLM proxy's CLI, installing it first if needed; or the reason it cannot be had."""
    cli = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if marker.exists():
        return cli, None
    try:
        if not (LITELLM_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            check=True,
            capture_output=True,
            timeout=1200,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"LiteLLM {LITELLM_VERSION} could not be installed ({exc}): {detail.decode()[-400:]}"
    marker.touch()
    return cli, None


# LiteLLM's CLI, with uvicorn's worker health check allowed 120 s instead of 5: its workers import litellm
# before they can answer the check (6 s of a loaded 2-core machine), so uvicorn killed and restarted them in a
# loop and the proxy never came up. Nothing else changes: the same CLI, options and request path.
_LITELLM_CLI = (
    "import sys, uvicorn.config\n"
    "init = uvicorn.config.Config.__init__\n"
    "def patient(self, *args, **kwargs):\n"
    "    init(self, *args, **kwargs)\n"
    "    self.timeout_worker_healthcheck = 120\n"
    "uvicorn.config.Config.__init__ = patient\n"
    "from litellm.proxy.proxy_cli import run_server\n"
    "sys.argv[0] = 'litellm'\n"
    "run_server()\n"
)


def _litellm_config(path, provider_url):
    config = {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": provider_url, "api_key": "sk-fake"},
            }
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
        "general_settings": {"master_key": MASTER_KEY},
    }
    path.write_text(json.dumps(config))  # JSON is YAML


# --- the hub -------------------------------------------------------------------------


def _hub_env(provider_url):
    limits = {"requests": {"rate": 1_000_000, "burst": 1_000_000}, "tokens": {"rate": 1e9, "burst": 1e9}}
    return {
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": provider_url,
        "AI_ROUTES_JSON": json.dumps({"simple": [["openai", "gpt-4o-mini"]]}),
        "AI_DEFAULT_TASK": "simple",
        "RATE_LIMITS_JSON": json.dumps({"openai": limits}),
        # The per-user inbound limit (30/m) and budget are policy, not the server: off for a load test.
        "RATELIMIT_ENABLE": "false",
        "AI_USER_MONTHLY_BUDGET_USD": "1000000",
        "WEB_CONCURRENCY": "2",
    }


# --- measurements ----------------------------------------------------------------------


class Target:
    def __init__(self, name, base, *, completions, probe, headers):
        self.name = name
        self.base = base
        self.completions = completions
        self.probe = probe  # [(label, path)]
        self.headers = headers


# The probe runs in a process of its own: in the load generator's process its thread would wait for the
# GIL whenever 256 streams open or end there, and its timings would be the client's, not the server's.
PROBE_SCRIPT = """
import json, sys, threading, time
import httpx
base, headers, probe, every = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
samples = {}
with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
    for label, path in probe:
        client.get(path)  # connected and imported before the load starts: not a sample
    print("ready", flush=True)
    while not stop.is_set():
        for label, path in probe:
            started = time.perf_counter()
            try:
                ok = client.get(path).status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.setdefault(label, []).append((time.perf_counter() - started) * 1000 if ok else None)
        stop.wait(every)
print(json.dumps(samples))
"""


class _Prober:
    """The probe's process: started before the load, asked for its samples after it."""

    def __init__(self, target):
        args = [target.base, json.dumps(target.headers), json.dumps(target.probe), str(PROBE_EVERY)]
        self.child = subprocess.Popen(
            [sys.executable, "-c", PROBE_SCRIPT, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if self.child.stdout.readline().strip() != "ready":
            raise RuntimeError("the probe process did not start")

    def samples(self):
        out, _ = self.child.communicate("", timeout=60)  # stdin closes: the probe stops and reports
        if self.child.returncode != 0:
            raise RuntimeError(f"the probe process failed (exit {self.child.returncode})")
        return json.loads(out)


async def _one_stream(client, target):
    started = time.perf_counter()
    chunks = 0
    async with client.stream("POST", target.completions, json={**BODY, "stream": True}) as resp:
        if resp.status_code != 200:
            body = await resp.aread()
            return f"HTTP {resp.status_code} {body[:120]!r}"
        async for _ in resp.aiter_bytes():
            chunks += 1
    return time.perf_counter() - started


async def _streams(target):
    limits = httpx.Limits(max_connections=STREAMS + 10, max_keepalive_connections=STREAMS + 10)
    timeout = httpx.Timeout(STREAM_SECONDS * 5, connect=30)
    async with httpx.AsyncClient(base_url=target.base, headers=target.headers, limits=limits, timeout=timeout) as c:
        results = await asyncio.gather(*(_one_stream(c, target) for _ in range(STREAMS)), return_exceptions=True)
    return [r if isinstance(r, float) else (r if isinstance(r, str) else type(r).__name__) for r in results]


def measure_streams(target):
    prober = _Prober(target)
    started = time.perf_counter()
    times = asyncio.run(_streams(target))
    wall = time.perf_counter() - started
    samples = prober.samples()
    done = [t for t in times if isinstance(t, float)]
    failures = {}
    for t in times:
        if not isinstance(t, float):
            failures[t] = failures.get(t, 0) + 1
    row = {
        "done": f"{len(done)}/{STREAMS}" + "".join(f"; {n} x {why}" for why, n in failures.items()),
        "median": statistics.median(done) if done else None,
        "max": max(done) if done else None,
        "wall": wall,
    }
    for label, values in samples.items():
        ok = [v for v in values if v is not None] or [None]
        if ok == [None]:
            row[label] = (None, None, None, len(values))
            continue
        row[label] = (common.percentile(ok, 50), common.percentile(ok, 99), max(ok), len(values) - len(ok))
    return row


def measure_latency(targets, direct):
    """Sequential non-streamed completions, rounds interleaved across the targets and the direct call."""
    lat = {t.name: [] for t in [*targets, direct]}
    clients = {t.name: httpx.Client(base_url=t.base, headers=t.headers, timeout=30) for t in [*targets, direct]}
    try:
        for t in [*targets, direct]:  # warm every path and connection
            for _ in range(5):
                clients[t.name].post(t.completions, json=BODY).raise_for_status()
        for _ in range(ROUNDS):
            for t in [direct, *targets]:
                client = clients[t.name]
                for _ in range(PER_ROUND):
                    started = time.perf_counter()
                    client.post(t.completions, json=BODY).raise_for_status()
                    lat[t.name].append((time.perf_counter() - started) * 1000)
    finally:
        for client in clients.values():
            client.close()
    return lat


# --- profile --------------------------------------------------------------------------


def _py_spy():
    exe = LITELLM_VENV.parent / "py-spy-venv" / "bin" / "py-spy"
    if exe.exists():
        return exe
    try:
        venv = exe.parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "py-spy==0.4.3"], check=True, capture_output=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return exe


def _profile_start(pgid, out_dir):
    """py-spy on each hub worker: only the thread holding the GIL, 500 times a second, so a sample is CPU the
    worker spent (a thread waiting on a socket or a lock is not sampled) and the shares add up to its busy time."""
    exe = _py_spy()
    if exe is None:
        return []
    pids = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    workers = [p for p in pids if p != str(pgid)]
    return [
        subprocess.Popen(
            [str(exe), "record", "-p", pid, "-f", "raw", "-o", str(out_dir / f"{pid}.txt")]
            + ["-r", "500", "--gil", "--nonblocking", "--threads"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in workers
    ]


# Where a sample's time goes, by the innermost frame that belongs to one of these (first match from the leaf).
_COMPONENTS = [
    (
        "provider SDK and its HTTP client (openai, httpx, httpcore, h11, anyio)",
        ("openai/", "httpx", "httpcore", "h11/", "anyio/"),
    ),
    ("PostgreSQL driver (psycopg)", ("psycopg",)),
    ("Django ORM and database wrappers", ("django/db/",)),
    ("Redis client (limiter, breaker, caches)", ("redis/",)),
    ("Django REST framework (auth, validation, rendering)", ("rest_framework/",)),
    ("thread hops (asgiref, executor, threading)", ("asgiref/", "concurrent/futures", "threading.py")),
    ("ASGI server (uvicorn)", ("uvicorn", "httptools")),
    ("logs and metrics", ("logging/", "prometheus")),
    ("Django request handling and middleware", ("django/", "corsheaders/", "csp/", "axes/", "whitenoise/")),
    ("the hub's own code (ai/, integrations/, config/)", ("ai/", "integrations/", "config/")),
]
# What part of a completion a sample belongs to, by a frame anywhere in its stack (first match). A coroutine
# resumed by the loop shows only its own frames (py-spy), so the SDK's and the asyncio Redis client's frames
# name their part too.
_PHASES = [
    ("booking after the answer (call row, roll-ups, budget, request log)", ("_write_ok_then (",)),
    ("request hop: auth, validation, budget hold", ("CompletionView.prepare (", "AsyncAPIView.prepare (")),
    (
        "provider call (SDK and its HTTP client)",
        ("_openai_complete (", "_anthropic_complete (", "openai/", "httpx", "httpcore", "h11/", "anyio/"),
    ),
    ("rate tokens and breaker (asyncio Redis)", ("take_tokens (", "atake_token (", "abefore_call (", "redis/asyncio")),
    ("call-log writer thread", ("CallLogWriter",)),
]


def _profile_summary(procs, out_dir):
    for proc in procs:
        proc.send_signal(2)  # SIGINT: py-spy writes what it has
    for proc in procs:
        proc.wait(30)
    keep = common.ROOT / "var" / "bench" / "ai-serving-profile"
    keep.mkdir(parents=True, exist_ok=True)
    components, phases, total = {}, {}, 0
    for path in out_dir.glob("*.txt"):
        (keep / path.name).write_text(path.read_text())
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = stack.split(";")[1:]  # the first is the thread
            n = int(count)
            total += n
            component = next(
                (name for frame in reversed(frames) for name, parts in _COMPONENTS if any(p in frame for p in parts)),
                "other (interpreter, stdlib)",
            )
            components[component] = components.get(component, 0) + n
            phase = next(
                (name for name, parts in _PHASES if any(p in frame for frame in frames for p in parts)),
                "the rest: the request through the server, middleware, view and response",
            )
            phases[phase] = phases.get(phase, 0) + n
    if not total:
        return "py-spy was not available; no profile."

    def rows(counts):
        return [(name, f"{n / total:.0%}") for name, n in sorted(counts.items(), key=lambda kv: -kv[1])]

    return (
        f"{total} samples of the thread holding the GIL at 500 Hz (CPU the workers spent; raw stacks in "
        "var/bench/ai-serving-profile/).\n\n"
        + common.table(["part of a completion", "share of the workers' CPU"], rows(phases))
        + "\n\n"
        + common.table(["component (innermost frame)", "share of the workers' CPU"], rows(components))
    )


# --- the suite ---------------------------------------------------------------------


def _fmt(ms):
    return "-" if ms is None else f"{ms:.1f}"


def run():
    why = common.setup()
    if why:
        return why
    ports = _ports()
    notes = []
    with tempfile.TemporaryDirectory(prefix="bench-ai-serving-") as tmp:
        tmp = Path(tmp)
        fake_port = next(ports)
        provider_url = f"http://127.0.0.1:{fake_port}/v1"
        fake = common.Child("fake_llm", [common.PYTHON, "bench/fake_llm.py", str(fake_port), str(STREAM_SECONDS)], tmp)
        children = [fake]
        try:
            _wait(f"{provider_url}/models", fake, 30)
            hub_port = next(ports)
            hub = common.Child(
                "hub",
                [
                    str(common.BIN / "gunicorn"),
                    "-c",
                    "config/gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{hub_port}",
                    "config.asgi:application",
                ],
                tmp,
                env=_hub_env(provider_url),
            )
            children.append(hub)
            hub_url = f"http://127.0.0.1:{hub_port}"
            _wait(hub_url + "/healthz", hub)
            _, token = common.api_token("bench-ai-serving")

            def hub_target(name, url):
                return Target(
                    name,
                    url,
                    completions="/api/v1/ai/completions/",
                    probe=[("health", "/healthz"), ("auth GET", "/api/v1/ai/usage/")],
                    headers={"Authorization": f"Token {token}"},
                )

            targets = [hub_target("hub", hub_url)]
            if (common.BIN / "granian").exists() and os.environ.get("BENCH_AI_GRANIAN", "1") != "0":
                # The same hub on the other ASGI server issue 11 named (a bench tool, requirements-dev.txt), with
                # what config/gunicorn.conf.py gives the production one: 2 workers, uvloop, the psycopg pool.
                granian_port = next(ports)
                granian = common.Child(
                    "hub-granian",
                    common.granian_argv(granian_port),
                    tmp,
                    env={**_hub_env(provider_url), "DATABASE_POOL": "true"},
                )
                children.append(granian)
                granian_url = f"http://127.0.0.1:{granian_port}"
                _wait(granian_url + "/healthz", granian)
                targets.append(hub_target("hub on granian", granian_url))
            if os.environ.get("BENCH_AI_LITELLM", "1") == "0":
                cli, why_not = None, "BENCH_AI_LITELLM=0"
            else:
                cli, why_not = _litellm_installed()
            if cli is None:
                notes.append(f"LiteLLM skipped: {why_not}")
            else:
                config = tmp / "litellm.yaml"
                _litellm_config(config, provider_url)
                lite_port = next(ports)
                lite = common.Child(
                    "litellm",
                    [
                        str(cli.parent / "python"),
                        "-c",
                        _LITELLM_CLI,
                        "--config",
                        str(config),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(lite_port),
                        "--num_workers",
                        "2",
                    ],
                    tmp,
                    # The price map bundled with the package: fetching it (no internet here) retried for ~7 s.
                    env={
                        "LITELLM_LOG": "ERROR",
                        "DISABLE_SCHEMA_UPDATE": "true",
                        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    },
                    # Its own defaults: no database (keys from the master key), no Redis.
                    unset=("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"),
                )
                children.append(lite)
                lite_url = f"http://127.0.0.1:{lite_port}"
                _wait(lite_url + "/health/liveliness", lite)
                targets.append(
                    Target(
                        "LiteLLM",
                        lite_url,
                        completions="/v1/chat/completions",
                        probe=[("health", "/health/liveliness"), ("auth GET", "/v1/models")],
                        headers={"Authorization": f"Bearer {MASTER_KEY}"},
                    )
                )
            direct = Target(
                "direct", f"http://127.0.0.1:{fake_port}", completions="/v1/chat/completions", probe=[], headers={}
            )
            # The floor (bench/floor_llm.py): the same SDK call behind a token check, nothing else. Non-streamed only.
            floor_port = next(ports)
            floor = common.Child(
                "floor",
                [
                    str(common.BIN / "gunicorn"),
                    "--bind",
                    f"127.0.0.1:{floor_port}",
                    "--workers",
                    "2",
                    "--worker-class",
                    "uvicorn_worker.UvicornWorker",
                    "--chdir",
                    str(common.ROOT / "bench"),
                    "floor_llm:app",
                ],
                tmp,
                env={
                    "FLOOR_PROVIDER": provider_url,
                    "FLOOR_REDIS": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
                },
            )
            children.append(floor)
            _wait(f"http://127.0.0.1:{floor_port}/healthz", floor)
            floor_target = Target(
                "floor",
                f"http://127.0.0.1:{floor_port}",
                completions="/v1/chat/completions",
                probe=[],
                headers={"Authorization": "Token floor-bench"},
            )

            stream_rows = []
            for t in targets if PARTS != "nonstream" else ():
                r = measure_streams(t)
                stream_rows.append(
                    (
                        t.name,
                        r["done"],
                        f"{r['median']:.2f}" if r["median"] else "-",
                        f"{r['max']:.2f}" if r["max"] else "-",
                        f"{r['max'] / STREAM_SECONDS:.2f}x" if r["max"] else "-",
                        *(
                            f"{_fmt(r[label][0])} / {_fmt(r[label][1])} / {_fmt(r[label][2])}"
                            + (f" ({r[label][3]} failed)" if r[label][3] else "")
                            for label in ("health", "auth GET")
                        ),
                    )
                )
            profile_dir = tmp / "profile"
            profile_dir.mkdir()
            spies = _profile_start(hub.proc.pid, profile_dir) if os.environ.get("BENCH_AI_PROFILE") else []
            lat = measure_latency([*targets, floor_target], direct)
            profile = _profile_summary(spies, profile_dir) if spies else ""
        finally:
            for child in reversed(children):
                child.stop()
                keep = common.ROOT / "var" / "bench" / f"ai-serving-{child.name}.log"
                keep.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone run with BENCH_AI_LITELLM=0 has none
                keep.write_bytes(child.log_path.read_bytes())

    base = statistics.median(lat["direct"])
    added = {name: statistics.median(values) - base for name, values in lat.items() if name != "direct"}
    lat_rows = [
        (
            name,
            f"{statistics.median(values):.2f}",
            f"{common.percentile(values, 99):.2f}",
            "-" if name == "direct" else f"{added[name]:+.2f}",
        )
        for name, values in lat.items()
    ]
    out = []
    if stream_rows:
        out += [
            f"Streams: {STREAMS} concurrent, each 20 chunks over {STREAM_SECONDS:.0f} s (the ideal time); "
            f"probe every {PROBE_EVERY} s from a process of its own (not the load generator's). Latencies in ms: p50 / p99 / max.",
            "",
            common.table(
                ["server", "streams done", "median s", "max s", "max / ideal", "health probe ms", "auth GET probe ms"],
                stream_rows,
            ),
            "",
        ]
    out += [
        f"Non-streamed: {ROUNDS} rounds x {PER_ROUND} sequential completions per target, interleaved; "
        "added = median through the server - median straight to the fake provider.",
        "",
        common.table(["path", "median ms", "p99 ms", "added ms"], lat_rows),
    ]
    if "LiteLLM" in added and added["LiteLLM"] > 0:
        out += [
            "",
            f"Hub's added latency / LiteLLM's: **{added['hub'] / added['LiteLLM']:.2f}** (goal <= 0.5); "
            + (
                f"the hub on granian's / LiteLLM's: {added['hub on granian'] / added['LiteLLM']:.2f}; "
                if "hub on granian" in added
                else ""
            )
            + f"the floor's / LiteLLM's: {added['floor'] / added['LiteLLM']:.2f}. The floor (bench/floor_llm.py) is the "
            "same SDK call behind a Redis token check on the same server, no framework, budget or booking: "
            "what any Python proxy here pays.",
        ]
    if profile:
        out += [
            "",
            "Where the hub workers' CPU went during the non-streamed rounds (py-spy --gil, per completion):",
            "",
            profile,
        ]
    out += [
        "",
        *notes,
        "",
        f"Servers: {common.where()}. Shared 2-core machine, other engineers' work running: "
        "absolute figures drift, the side-by-side ratios are the point.",
    ]
    return "\n".join(out)
