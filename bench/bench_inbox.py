"""Webhook ack throughput: signed deliveries POSTed to the inbox, as production serves it and on other servers.

The provider is bench.hookapp's `benchhook` (HMAC-SHA256 in Stripe's scheme,
installed by bench.settings only). An asyncio load generator (a minimal HTTP/1.1 client; httpx for comparison) sends
signed events, 20 % of the deliveries duplicates (re-signed, as a provider's
retry would be), in two phases per server configuration:

- saturation: a fixed number of concurrent clients, each sending its next
  delivery as soon as the last is acked (closed loop): the most acks per
  second the server gives. By Little's law its latency is about
  clients / throughput, so it says little about the latency at a given load;
- paced: deliveries sent on a fixed schedule (half the target rate, then the
  target rate) whatever the
  server does (open loop), latency counted from each delivery's scheduled
  time, so a server that falls behind shows its queueing in the p99.

Then a Celery worker drains the queue and the suite checks that every unique
event was handled exactly once (the handler counts in Redis, outside the
database transaction, so a second run of any event would show).
"""

import asyncio
import json
import os
import random
import socket
import time
import uuid
from collections import Counter

from bench import common

TITLE = "Webhook ack throughput"

# Knobs for quicker iterations (the defaults are the suite's figures): BENCH_INBOX_CONFIGS picks rows by
# number (comma-separated, from 1, in CONFIGS' order), BENCH_INBOX_DELIVERIES and BENCH_INBOX_PACED_SECONDS shrink the
# phases.
SATURATION_DELIVERIES = int(os.environ.get("BENCH_INBOX_DELIVERIES", "1500"))
PACED_SECONDS = int(os.environ.get("BENCH_INBOX_PACED_SECONDS", "4"))
DUPLICATE_SHARE = 0.20  # of all deliveries
CONCURRENCY = 32
PACED_MAX_CONNECTIONS = 64
WARMUP = 64
DRAIN_TIMEOUT = 150
TARGET_ACKS = 400
TARGET_P99_MS = 100
HALF_RATE = TARGET_ACKS // 2
PATH = "/webhooks/benchhook/"
ASGI = "uvicorn_worker.UvicornWorker"  # what config/gunicorn.conf.py runs in production (config.asgi)
GRANIAN = "granian"  # the other ASGI server issue 11 named, measured against it (bench.common.granian)
# (label, worker class, workers, threads, Celery worker running during the load, load generator client, env)
CONFIGS = [
    # DATABASE_POOL as config/gunicorn.conf.py sets it: under ASGI each request runs in a thread of its own.
    ("ASGI (production server): uvicorn workers x 2", ASGI, 2, 1, False, "raw", {"DATABASE_POOL": "true"}),
    ("gthread, 2 workers x 4 threads", "gthread", 2, 4, False, "raw", {}),
    (
        "gthread, 2 workers x 4 threads; full middleware chain (WEBHOOK_FAST_PATH_PREFIX empty)",
        "gthread",
        2,
        4,
        False,
        "raw",
        {"WEBHOOK_FAST_PATH_PREFIX": ""},
    ),
    ("sync, 3 workers", "sync", 3, 1, False, "raw", {}),
    ("ASGI: uvicorn workers x 2 + Celery worker running", ASGI, 2, 1, True, "raw", {"DATABASE_POOL": "true"}),
    ("ASGI: granian x 2", GRANIAN, 2, 1, False, "raw", {"DATABASE_POOL": "true"}),
]


def _deliveries(prefix, total, duplicate_share, seed):
    """`total` signed (event_id, body, signature) deliveries, `duplicate_share` of them repeats, shuffled."""
    from bench.hookapp.webhooks import EVENT_TYPE
    from tests.integrations.webhook_provider import event_body, sign

    rng = random.Random(seed)
    unique = round(total * (1 - duplicate_share))
    ids = [f"{prefix}_{i}" for i in range(unique)]
    chosen = ids + [rng.choice(ids) for _ in range(total - unique)]
    rng.shuffle(chosen)
    out = []
    for event_id in chosen:
        body = event_body(event_id, EVENT_TYPE, data={"object": {"id": f"obj_{event_id}", "amount": 1000}})
        out.append((event_id, body, sign(body)))
    return out


class RawHTTP:
    """A minimal asyncio HTTP/1.1 client: keep-alive connections, POST, status and JSON body.

    httpx.AsyncClient spends ~1.5-3 ms of CPU per request here, a large share
    of two cores that the server under test needs; this spends a fraction of
    that. It speaks only what gunicorn answers (Content-Length or chunked
    bodies, Connection: close) and reopens a connection the server closed.
    """

    def __init__(self, base_url, connections):
        host_port = base_url.split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.slots = asyncio.Semaphore(connections)
        self.idle = []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        for _, writer in self.idle:
            writer.close()

    async def _connect(self):
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def post(self, path, body, headers):
        async with self.slots:  # waiting here is queueing, which the caller's latency includes
            conn = self.idle.pop() if self.idle else await self._connect()
            reader, writer = conn
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
                + body
            )
            status = int((await reader.readline()).split()[1])
            length, chunked, close = None, False, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    chunked = True
                elif name == "connection" and value == "close":
                    close = True
            if chunked:
                data = b""
                while size := int((await reader.readline()).strip(), 16):
                    data += await reader.readexactly(size)
                    await reader.readline()
                await reader.readline()
            elif length is not None:
                data = await reader.readexactly(length)
            else:
                data, close = await reader.read(), True
            if close:
                writer.close()
            else:
                self.idle.append(conn)
            return status, data


class HttpxClient:
    """The same interface over httpx.AsyncClient (keep-alive pool), for comparison."""

    def __init__(self, base_url, connections):
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        # No pool timeout: a delivery waiting for a connection is queueing, which its latency shows.
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(30, pool=None))

    async def __aenter__(self):
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc):
        await self.client.__aexit__(*exc)

    async def post(self, path, body, headers):
        resp = await self.client.post(path, content=body, headers=headers)
        return resp.status_code, resp.content


CLIENTS = {"raw": RawHTTP, "httpx": HttpxClient}


async def _send(client, body, signature, results):
    from tests.integrations.webhook_provider import SIGNATURE_HEADER

    status, data = await client.post(PATH, body, {SIGNATURE_HEADER: signature, "Content-Type": "application/json"})
    outcome = json.loads(data).get("status") if status == 200 else data[:80]
    results[(status, outcome)] += 1


async def _saturate(base_url, deliveries, concurrency, client_kind="raw"):
    """Closed loop: `concurrency` clients, each sends its next delivery when the last is acked."""
    latencies, results = [], Counter()
    pending = iter(deliveries)
    async with CLIENTS[client_kind](base_url, concurrency) as client:

        async def sender():
            for _, body, signature in pending:
                started = time.perf_counter()
                await _send(client, body, signature, results)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, results


async def _paced(base_url, deliveries, rate, client_kind="raw"):
    """Open loop: delivery i is due at start + i / rate; its latency counts from then, not from when it left."""
    latencies, results = [], Counter()
    loop = asyncio.get_running_loop()
    async with CLIENTS[client_kind](base_url, PACED_MAX_CONNECTIONS) as client:

        async def one(due, body, signature):
            await _send(client, body, signature, results)
            latencies.append(loop.time() - due)

        start = loop.time() + 0.05
        tasks = []
        for i, (_, body, signature) in enumerate(deliveries):
            due = start + i / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            tasks.append(asyncio.create_task(one(due, body, signature)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    return elapsed, latencies, results


def _reset():
    from django.db import connection

    from bench.hookapp.webhooks import PROVIDER, handled_key
    from integrations.models import WebhookEvent
    from integrations.redis import get_client

    WebhookEvent.objects.filter(provider=PROVIDER).delete()
    # The rows deleted leave dead tuples (autovacuum is off here): without this, each configuration inserted into
    # the table the one before left behind, and whichever ran second was the slower (bench_stripe_events does it too).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE " + WebhookEvent._meta.db_table)
    client = get_client()
    client.delete(handled_key())
    # Celery's "default" queue in the bench's Redis db: a run aborted earlier may have left messages.
    client.delete("default")


def _processed(prefix):
    from bench.hookapp.webhooks import PROVIDER
    from integrations.models import WebhookEvent

    return WebhookEvent.objects.filter(provider=PROVIDER, event_id__startswith=prefix, status="processed").count()


def _wait_processed(prefix, expected, started, timeout=DRAIN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _processed(prefix) >= expected:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def _check_exactly_once(prefix, unique_ids):
    """(handled once, more than once, never, stored rows, rows by status) for this run's events."""
    from bench.hookapp.webhooks import PROVIDER, handled_key
    from integrations.models import WebhookEvent
    from integrations.redis import get_client

    counts = {k.decode(): int(v) for k, v in get_client().hgetall(handled_key()).items()}
    once = sum(1 for i in unique_ids if counts.get(i) == 1)
    more = sum(1 for i in unique_ids if counts.get(i, 0) > 1)
    never = sum(1 for i in unique_ids if i not in counts)
    rows = WebhookEvent.objects.filter(provider=PROVIDER, event_id__startswith=prefix)
    statuses = Counter(rows.values_list("status", flat=True))
    return once, more, never, rows.count(), statuses


def _phase(elapsed, latencies, results, cpu_s):
    return {
        "elapsed": elapsed,
        "deliveries": len(latencies),
        "client_cpu_ms": cpu_s * 1000 / len(latencies),
        "acks_per_s": len(latencies) / elapsed,
        "p50_ms": common.percentile(latencies, 50) * 1000,
        "p99_ms": common.percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "results": results,
    }


def _one_config(label, worker_class, workers, threads, worker_during_load, client_kind, env, seed):
    prefix = f"b{uuid.uuid4().hex[:8]}"
    _reset()
    warm = _deliveries(f"{prefix}w", WARMUP, 0, seed)
    saturation = _deliveries(f"{prefix}s", SATURATION_DELIVERIES, DUPLICATE_SHARE, seed + 1)
    half = _deliveries(f"{prefix}h", HALF_RATE * PACED_SECONDS, DUPLICATE_SHARE, seed + 2)
    paced = _deliveries(f"{prefix}p", TARGET_ACKS * PACED_SECONDS, DUPLICATE_SHARE, seed + 3)
    unique_ids = sorted({d[0] for d in warm + saturation + half + paced})
    result = {"label": label, "unique": len(unique_ids)}
    worker_cm = common.celery_worker(concurrency=2) if worker_during_load else None
    if worker_class == GRANIAN:
        server_cm = common.granian(workers=workers)
    else:
        app = "config.asgi:application" if worker_class == ASGI else "config.wsgi:application"
        server_cm = common.gunicorn(workers=workers, worker_class=worker_class, threads=threads, app=app)
    with common.environ(env), server_cm as server:  # the server's processes read the environment at start
        groups = {"web server": server.pgid}
        if worker_cm is not None:
            worker = worker_cm.__enter__()
            result["worker_ready_s"] = worker.ready_s
            groups["Celery worker"] = worker.pgid
        try:
            asyncio.run(_saturate(server.url, warm, 8))  # every server worker has its DB and Redis connections
            result["load"] = common.machine_load()
            started = time.monotonic()
            for phase, fn, data, arg in [
                ("saturation", _saturate, saturation, CONCURRENCY),
                ("half", _paced, half, HALF_RATE),
                ("paced", _paced, paced, TARGET_ACKS),
            ]:
                meter = common.CpuMeter(groups).start()
                cpu = time.process_time()
                outcome = asyncio.run(fn(server.url, data, arg, client_kind))
                result[phase] = _phase(*outcome, time.process_time() - cpu)
                result[phase]["cpu"] = meter.stop()
            if worker_cm is not None:
                result["drain_s"] = _wait_processed(prefix, len(unique_ids), started)
        finally:
            if worker_cm is not None:
                worker_cm.__exit__(None, None, None)
    if worker_cm is None:
        # The worker starts once the load is over; the time counts from its start.
        started = time.monotonic()
        with common.celery_worker(concurrency=2) as worker:
            result["worker_ready_s"] = worker.ready_s
            meter = common.CpuMeter({"Celery worker": worker.pgid}).start()
            result["drain_s"] = _wait_processed(prefix, len(unique_ids), started)
            result["drain_cpu"] = meter.stop()
    result["check"] = _check_exactly_once(prefix, unique_ids)
    return result


def _counts(results):
    received = results.get((200, "received"), 0)
    duplicate = results.get((200, "duplicate"), 0)
    return f"{received} / {duplicate} / {sum(results.values()) - received - duplicate}"


def _configs():
    """Every configuration; the ASGI rows only where the web server's psycopg pool exists (DATABASE_POOL):
    without it each ASGI request opens a connection of its own and PostgreSQL runs out of them."""
    import importlib.util

    picked = os.environ.get("BENCH_INBOX_CONFIGS", "")
    configs = [CONFIGS[int(n) - 1] for n in picked.split(",")] if picked else CONFIGS
    if not (common.BIN / "granian").exists():  # a bench tool (requirements-dev.txt): not in a production venv
        configs = [c for c in configs if c[1] != GRANIAN]
    if importlib.util.find_spec("psycopg_pool") is not None:
        return configs
    return [c for c in configs if c[1] not in (ASGI, GRANIAN)]


def run():
    reason = common.setup()
    if reason:
        return reason
    import logging
    import os

    # httpx logs every request at INFO (the bench settings keep production's INFO): not the generator's job.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    where = common.where()
    configs = _configs()
    results = [_one_config(*config, seed=10 * i) for i, config in enumerate(configs)]
    for r, config in zip(results, configs, strict=True):
        r["worker_during_load"] = config[4]

    rows, checks = [], []
    for r in results:
        s, h, p = r["saturation"], r["half"], r["paced"]
        rows.append(
            [
                r["label"],
                f"**{s['acks_per_s']:.0f}**",
                f"{s['p50_ms']:.1f}",
                f"{s['p99_ms']:.1f}",
                f"{h['p50_ms']:.1f}",
                f"{h['p99_ms']:.1f}",
                f"{p['acks_per_s']:.0f}",
                f"{p['p50_ms']:.1f}",
                f"**{p['p99_ms']:.1f}**",
                f"{p['max_ms']:.0f}",
                f"{_counts(s['results'])}; {_counts(h['results'])}; {_counts(p['results'])}",
                f"{s['client_cpu_ms']:.2f}",
                r["load"],
            ]
        )
        once, more, never, stored, statuses = r["check"]
        drain = f"{r['drain_s']:.1f} s" if r["drain_s"] is not None else f"not done within {DRAIN_TIMEOUT} s"
        verdict = "yes" if once == r["unique"] == stored and not more and not never else "**NO**"
        checks.append(
            [
                r["label"],
                f"{r['worker_ready_s']:.1f} s",
                drain,
                f"{stored}: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
                f"{once} / {more} / {never}",
                verdict,
            ]
        )
    cpu_labels = ["web server", "PostgreSQL", "Redis", "load generator", "Celery worker", "rest of the machine"]
    cpu_rows = []
    for r in results:
        s = r["saturation"]
        per = {k: v * 1000 / s["deliveries"] for k, v in s["cpu"].items()}
        total = sum(per.values())
        cpu_rows.append(
            [r["label"]]
            + [f"{per[k]:.2f}" if k in per else "-" for k in cpu_labels]
            + [f"{total:.2f}", f"{sum(s['cpu'].values()) / s['elapsed']:.2f}"]
        )
    drains = [r for r in results if "drain_cpu" in r]
    drain_note = ""
    if drains:
        per_event = [r["drain_cpu"].get("Celery worker", 0) * 1000 / r["unique"] for r in drains]
        pg_per_event = [r["drain_cpu"].get("PostgreSQL", 0) * 1000 / r["unique"] for r in drains]
        drain_note = (
            f" Draining, the worker used {common.median(per_event):.2f} ms of CPU per event and PostgreSQL "
            f"{common.median(pg_per_event):.2f} ms (medians over the runs where it ran alone)."
        )
    best = max((r for r in results if not r["worker_during_load"]), key=lambda r: r["saturation"]["acks_per_s"])
    met = best["saturation"]["acks_per_s"] >= TARGET_ACKS and best["paced"]["p99_ms"] < TARGET_P99_MS
    lines = [
        f"Per server configuration: {WARMUP} warm-up deliveries; **saturation**: {SATURATION_DELIVERIES} deliveries "
        f"from {CONCURRENCY} concurrent clients (closed loop); **paced**: {PACED_SECONDS} s at {HALF_RATE}/s, then "
        f"{PACED_SECONDS} s at {TARGET_ACKS}/s, on a fixed schedule (open loop, latency from each delivery's scheduled time, up to "
        f"{PACED_MAX_CONNECTIONS} connections). {DUPLICATE_SHARE:.0%} of deliveries in each phase are duplicates, "
        f"shuffled in. The load generator is a minimal asyncio HTTP/1.1 client with keep-alive (bench_inbox.RawHTTP; "
        f"gunicorn's sync workers close each connection). "
        f"gunicorn serves config.asgi with uvicorn workers (the production server, config/gunicorn.conf.py) or "
        f"config.wsgi (gthread, sync), or granian serves config.asgi (measured against the production server), "
        f"on 127.0.0.1 with the bench settings (DEBUG off, INFO JSON logging as in "
        f"production); {where}. Celery worker: prefork, concurrency 2, INFO logging; it drains in batches.",
        "",
        f"**The machine has {os.cpu_count()} cores, shared by the web server, the Celery worker (where running), the load "
        "generator (same machine, its CPU is part of the figure), PostgreSQL and Redis**, and on this shared "
        "machine by whatever else ran at the time: see the last column.",
        "",
        f"Target >= {TARGET_ACKS} acks/s (saturation) with p99 < {TARGET_P99_MS} ms (paced at {TARGET_ACKS}/s): "
        + ("met" if met else "**missed**")
        + f" (best configuration without the worker competing: {best['label']}, "
        f"{best['saturation']['acks_per_s']:.0f} acks/s, paced p99 {best['paced']['p99_ms']:.1f} ms).",
        "",
        common.table(
            [
                "server",
                "saturation acks/s",
                "sat. p50 (ms)",
                "sat. p99 (ms)",
                f"{HALF_RATE}/s p50 (ms)",
                f"{HALF_RATE}/s p99 (ms)",
                f"acks/s at {TARGET_ACKS}/s offered",
                f"{TARGET_ACKS}/s p50 (ms)",
                f"{TARGET_ACKS}/s p99 (ms)",
                f"{TARGET_ACKS}/s max (ms)",
                "200 received / duplicate / other (sat.; half; paced)",
                "load generator CPU per delivery (ms)",
                "machine at start",
            ],
            rows,
        ),
        "",
        "Processing: the worker starts after the load (time from its start) or runs during it (time from the "
        "load's start). Exactly once: unique events handled once / more than once / never, by the handler's "
        "own count in Redis:",
        "",
        common.table(
            [
                "server",
                "worker ready after",
                "all processed after",
                "stored rows",
                "handled once / more / never",
                "exactly once",
            ],
            checks,
        ),
        "",
        "Where the CPU went during the saturation phase, in ms of CPU per delivery (from /proc: the web server's and "
        "the worker's process groups, every `postgres` and `redis-server` process, this process as the load "
        "generator, and the rest of the machine's busy time, which on a shared machine includes other people's "
        "work); the last column is how many of the cores were busy on average:" + drain_note,
        "",
        common.table(["server", *cpu_labels, "total", "cores busy"], cpu_rows),
    ]
    return "\n".join(lines)
