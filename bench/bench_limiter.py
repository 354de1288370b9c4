"""Limiter accuracy: `integrations.limiter.take` hammered by threads and processes.

Each trial gives a fresh bucket (rate r/s, burst b) to workers that call
`take` in a tight loop for a few seconds and count the grants. Over the span
from the first grant's call to the last grant's return, a correct bucket gives
at most r x span + b tokens, and a bucket that is not starving its callers
gives close to that: the steady rate (grants - burst) / span should be within
5 % below r. Run against Redis (the Lua script) and against the no-Redis
fallback (file lock under var/state, one machine).
"""

import multiprocessing
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench import common

TITLE = "Limiter accuracy"

SECONDS = 3.0
REPEATS = 2
LIMITS = [(50, 10), (200, 20)]  # (rate per second, burst)
MODES = [("8 threads", 1, 8), ("4 processes x 2 threads", 4, 2)]
PROVIDER = "benchlimit"
TOLERANCE = 0.05


def _hammer(scope, threads, start_at, stop_at):
    """Grants, attempts, first grant's call start and last grant's return (monotonic, system-wide clock)."""
    from integrations import limiter

    results = []

    def worker():
        granted = attempts = 0
        first = last = None
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while True:
            began = time.monotonic()
            if began >= stop_at:
                break
            decision = limiter.take(PROVIDER, scope)
            attempts += 1
            if decision.granted:
                granted += 1
                first = began if first is None else first
                last = time.monotonic()
        results.append((granted, attempts, first, last))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    granted = sum(r[0] for r in results)
    attempts = sum(r[1] for r in results)
    firsts = [r[2] for r in results if r[2] is not None]
    lasts = [r[3] for r in results if r[3] is not None]
    return granted, attempts, min(firsts, default=None), max(lasts, default=None)


def _child(scope, threads, start_at, stop_at, queue):
    queue.put(_hammer(scope, threads, start_at, stop_at))


def _trial(processes, threads):
    scope = uuid.uuid4().hex[:12]
    start_at = time.monotonic() + (1.0 if processes > 1 else 0.2)
    stop_at = start_at + SECONDS
    if processes == 1:
        parts = [_hammer(scope, threads, start_at, stop_at)]
    else:
        from django.db import connections

        connections.close_all()  # children must not share the parent's database socket
        ctx = multiprocessing.get_context("fork")  # children inherit the overridden settings
        queue = ctx.Queue()
        procs = [ctx.Process(target=_child, args=(scope, threads, start_at, stop_at, queue)) for _ in range(processes)]
        for p in procs:
            p.start()
        parts = [queue.get(timeout=SECONDS + 30) for _ in procs]
        for p in procs:
            p.join(10)
    granted = sum(p[0] for p in parts)
    attempts = sum(p[1] for p in parts)
    first = min(p[2] for p in parts if p[2] is not None)
    last = max(p[3] for p in parts if p[3] is not None)
    return granted, attempts, last - first


def run():
    reason = common.setup()
    if reason:
        return reason
    from django.conf import settings
    from django.test import override_settings

    redis_url = settings.REDIS_URL
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="bench-limiter-") as var_dir:
        for backend, url in [("Redis (Lua)", redis_url), ("file lock (no Redis)", "")]:
            for rate, burst in LIMITS:
                limits = {PROVIDER: {"requests": {"rate": rate, "burst": burst}}}
                with override_settings(RATE_LIMITS=limits, REDIS_URL=url, VAR_DIR=Path(var_dir)):
                    for mode, processes, threads in MODES:
                        for repeat in range(REPEATS):
                            granted, attempts, span = _trial(processes, threads)
                            bound = rate * span + burst
                            steady = (granted - burst) / span
                            ratio = steady / rate
                            within = granted <= bound
                            close = ratio >= 1 - TOLERANCE
                            if not (within and close):
                                failures.append(f"{backend}, {rate}/s burst {burst}, {mode}, run {repeat + 1}")
                            rows.append(
                                [
                                    backend,
                                    f"{rate}/s, burst {burst}",
                                    mode,
                                    repeat + 1,
                                    f"{span:.2f}",
                                    f"{attempts / span:,.0f}",
                                    granted,
                                    f"{bound:.1f}",
                                    "yes" if within else "**NO**",
                                    f"{steady:.1f}",
                                    f"{ratio:.3f}" if close else f"**{ratio:.3f}**",
                                ]
                            )
    verdict = "met in every trial" if not failures else "**missed** in " + "; ".join(failures)
    lines = [
        f"Each trial: a fresh bucket, callers in a tight `limiter.take()` loop for {SECONDS:.0f} s, {REPEATS} runs per "
        f"setting. span = first grant's call to last grant's return; bound = rate x span + burst; steady rate = "
        f"(granted - burst) / span. {common.where()}; machine at end: {common.machine_load()}.",
        "",
        f"Target: granted never above the bound, steady rate within {TOLERANCE:.0%} below the configured rate: {verdict}.",
        "",
        common.table(
            [
                "backend",
                "limit",
                "callers",
                "run",
                "span (s)",
                "take() calls/s",
                "granted",
                "bound",
                "<= bound",
                "steady rate (/s)",
                "steady / configured",
            ],
            rows,
        ),
    ]
    return "\n".join(lines)
