"""Webhook ack throughput: signed deliveries POSTed to a gunicorn-served inbox.

The provider is bench.hookapp's `benchhook` (HMAC-SHA256 in Stripe's scheme,
installed by bench.settings only). An asyncio load generator (httpx, keep-alive
where the server allows it) sends a few thousand signed events, 20 % of them
duplicate deliveries (re-signed, as a provider's retry would be), from a fixed
number of concurrent clients, and measures each ack. Then a Celery worker
drains the queue and the suite checks that every unique event was handled
exactly once (the handler counts in Redis, outside the database transaction,
so a second run of any event would show).

Server, worker, load generator, PostgreSQL and Redis all share this machine's
cores; the load generator's own CPU is part of what it measures.
"""

import asyncio
import random
import time
import uuid
from collections import Counter

from bench import common

TITLE = "Webhook ack throughput"

UNIQUE = 2400
DUPLICATE_SHARE = 0.20  # of all deliveries
CONCURRENCY = 32
WARMUP = 64
DRAIN_TIMEOUT = 180
TARGET_ACKS = 400
TARGET_P99_MS = 100
PATH = "/webhooks/benchhook/"
# (label, worker class, workers, threads, worker running during the load)
CONFIGS = [
    ("sync, 3 workers", "sync", 3, 1, False),
    ("gthread, 2 workers x 4 threads", "gthread", 2, 4, False),
    ("gthread, 2 workers x 4 threads, Celery worker running", "gthread", 2, 4, True),
]


def _deliveries(prefix, unique, duplicate_share, seed):
    """Signed (event_id, body, signature) deliveries: every unique event once, then duplicates, shuffled."""
    from bench.hookapp.webhooks import EVENT_TYPE
    from tests.integrations.webhook_provider import event_body, sign

    rng = random.Random(seed)
    ids = [f"{prefix}_{i}" for i in range(unique)]
    duplicates = round(unique * duplicate_share / (1 - duplicate_share))
    chosen = ids + [rng.choice(ids) for _ in range(duplicates)]
    rng.shuffle(chosen)
    out = []
    for event_id in chosen:
        body = event_body(event_id, EVENT_TYPE, data={"object": {"id": f"obj_{event_id}", "amount": 1000}})
        out.append((event_id, body, sign(body)))
    return out


async def _post_all(base_url, deliveries, concurrency):
    import httpx

    from tests.integrations.webhook_provider import SIGNATURE_HEADER

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies, results = [], Counter()
    pending = iter(deliveries)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def sender():
            for _, body, signature in pending:
                started = time.perf_counter()
                resp = await client.post(
                    PATH, content=body, headers={SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
                )
                latencies.append(time.perf_counter() - started)
                status = resp.json().get("status") if resp.status_code == 200 else resp.text[:80]
                results[(resp.status_code, status)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, results


def _reset():
    from bench.hookapp.webhooks import PROVIDER, handled_key
    from integrations.models import WebhookEvent
    from integrations.redis import get_client

    WebhookEvent.objects.filter(provider=PROVIDER).delete()
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
    """(handled once, handled more than once, never handled, rows not processed) for this run's events."""
    from bench.hookapp.webhooks import PROVIDER, handled_key
    from integrations.models import WebhookEvent
    from integrations.redis import get_client

    counts = {k.decode(): int(v) for k, v in get_client().hgetall(handled_key()).items()}
    counts = {k: v for k, v in counts.items() if k.startswith(prefix)}
    once = sum(1 for i in unique_ids if counts.get(i) == 1)
    more = sum(1 for i in unique_ids if counts.get(i, 0) > 1)
    never = sum(1 for i in unique_ids if i not in counts)
    rows = WebhookEvent.objects.filter(provider=PROVIDER, event_id__startswith=prefix)
    statuses = Counter(rows.values_list("status", flat=True))
    return once, more, never, rows.count(), statuses


def _one_config(label, worker_class, workers, threads, worker_during_load, seed):
    prefix = f"b{uuid.uuid4().hex[:8]}"
    _reset()
    warm = _deliveries(f"{prefix}w", WARMUP, 0, seed + 1)
    deliveries = _deliveries(prefix, UNIQUE, DUPLICATE_SHARE, seed)
    unique_ids = sorted({d[0] for d in warm + deliveries})
    result = {"label": label, "deliveries": len(deliveries), "unique": len(unique_ids)}
    worker_cm = common.celery_worker(concurrency=2) if worker_during_load else None
    with common.gunicorn(workers=workers, worker_class=worker_class, threads=threads) as url:
        if worker_cm is not None:
            result["worker_ready_s"] = worker_cm.__enter__()
        try:
            asyncio.run(_post_all(url, warm, 8))  # every gunicorn worker has its DB and Redis connections
            load = common.machine_load()
            started = time.monotonic()
            elapsed, latencies, results = asyncio.run(_post_all(url, deliveries, CONCURRENCY))
            result.update(
                elapsed=elapsed,
                acks_per_s=len(latencies) / elapsed,
                p50_ms=common.percentile(latencies, 50) * 1000,
                p99_ms=common.percentile(latencies, 99) * 1000,
                max_ms=max(latencies) * 1000,
                results=results,
                load=load,
            )
            if worker_cm is not None:
                result["drain_s"] = _wait_processed(prefix, len(unique_ids), started)
        finally:
            if worker_cm is not None:
                worker_cm.__exit__(None, None, None)
    if worker_cm is None:
        # The worker starts once the load is over; the time counts from its start.
        started = time.monotonic()
        with common.celery_worker(concurrency=2) as ready_s:
            result["worker_ready_s"] = ready_s
            result["drain_s"] = _wait_processed(prefix, len(unique_ids), started)
    result["check"] = _check_exactly_once(prefix, unique_ids)
    return result


def run():
    reason = common.setup()
    if reason:
        return reason
    import logging
    import os

    # httpx logs every request at INFO (the bench settings keep production's INFO): not the generator's job.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    where = common.where()
    results = [_one_config(*config, seed=i) for i, config in enumerate(CONFIGS)]

    rows = []
    for r in results:
        ok = sum(n for (code, _), n in r["results"].items() if code == 200)
        received = r["results"].get((200, "received"), 0)
        duplicate = r["results"].get((200, "duplicate"), 0)
        other = r["deliveries"] - ok
        rows.append(
            [
                r["label"],
                f"**{r['acks_per_s']:.0f}**",
                f"{r['p50_ms']:.1f}",
                f"**{r['p99_ms']:.1f}**",
                f"{r['max_ms']:.0f}",
                f"{received} / {duplicate} / {other}",
                r["load"],
            ]
        )
    checks = []
    for r in results:
        once, more, never, stored, statuses = r["check"]
        drain = f"{r['drain_s']:.1f} s" if r["drain_s"] is not None else f"not done within {DRAIN_TIMEOUT} s"
        verdict = "yes" if once == r["unique"] and stored == r["unique"] and not more and not never else "**NO**"
        checks.append(
            [
                r["label"],
                drain,
                f"{r['worker_ready_s']:.1f} s",
                f"{stored} rows, " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
                f"{once} / {more} / {never}",
                verdict,
            ]
        )
    best = max(results, key=lambda r: r["acks_per_s"])
    met = best["acks_per_s"] >= TARGET_ACKS and best["p99_ms"] < TARGET_P99_MS
    lines = [
        f"{UNIQUE} unique signed events plus {results[0]['deliveries'] - UNIQUE} duplicate deliveries "
        f"({DUPLICATE_SHARE:.0%} of {results[0]['deliveries']}), shuffled, POSTed to `{PATH}` by "
        f"{CONCURRENCY} concurrent asyncio clients (httpx.AsyncClient, keep-alive; gunicorn's sync workers "
        f"close each connection) after {WARMUP} warm-up events. gunicorn serves config.wsgi with the bench "
        f"settings (DEBUG off, INFO logging as in production); {where}. The Celery worker is prefork, "
        f"concurrency 2.",
        "",
        f"**The machine has {os.cpu_count()} cores, shared by gunicorn, the Celery worker (where running), "
        "the load generator, PostgreSQL and Redis** (and, on this shared machine, whatever else ran: "
        "see the load column).",
        "",
        f"Target >= {TARGET_ACKS} acks/s with p99 < {TARGET_P99_MS} ms: "
        + ("met" if met else "**missed**")
        + f" (best: {best['label']}, {best['acks_per_s']:.0f} acks/s, p99 {best['p99_ms']:.1f} ms).",
        "",
        common.table(
            ["server", "acks/s", "p50 (ms)", "p99 (ms)", "max (ms)", "200 received / duplicate / other", "machine load at start"],
            rows,
        ),
        "",
        "Processing afterwards (the worker started after the load unless it ran during it; the time counts "
        "from the worker's start, or from the load's start when it ran during it). Exactly once: every unique "
        "event handled once / more than once / never, from the handler's own count in Redis:",
        "",
        common.table(
            ["server", "all processed after", "worker ready after", "rows (by status)", "handled once / more / never", "exactly once"],
            checks,
        ),
    ]
    return "\n".join(lines)
