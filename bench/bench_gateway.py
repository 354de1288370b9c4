"""Gateway overhead: what `integrations.gateway.call` adds to a provider call.

The "provider call" is an in-process fake function, so everything measured is
the gateway's own work: the configured check, a rate-limit token and the
breaker's state (one Redis Lua round trip while the circuit is closed), the
ProviderCall row and its two hourly roll-ups on PostgreSQL (one statement,
integrations.usage.call_record, in its own autocommit transaction), the budget
lookup (cache, Redis) and Prometheus metrics. Bare and gateway batches alternate
in one run, so machine noise hits both; several runs, medians reported.
"""

import time

from bench import common

TITLE = "Gateway overhead"

RUNS = 5
PAIRS = 4  # rounds of bare + each variant per run, in rotating order
BATCH = 150
WARMUP = 300
COMPONENT_SAMPLES = 500
TARGET_MS = 1.5
OWNER = "bench_gateway"

# What-if variants, measured in the same runs (not what the code does today):
AS_IS = "as is"
ASYNC_COMMIT = "synchronous_commit=off"
VARIANTS = (AS_IS, ASYNC_COMMIT)


def _fake_sdk_call():
    return {"id": "pi_bench", "object": "payment_intent", "amount": 1000}


def _meter(result):
    return {"http_status": 200, "request_id": "req_bench", "units": {"amount_usd": 10}}


def _time_bare(n):
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t = clock()
        _fake_sdk_call()
        out.append(clock() - t)
    return out


def _time_gateway(n, owner, variant="as is"):
    """Per-call ns of n gateway calls; the what-if variant changes only how PostgreSQL commits."""
    from django.db import connection

    from integrations import gateway

    if variant == ASYNC_COMMIT:
        with connection.cursor() as cur:
            cur.execute("SET synchronous_commit TO off")
    clock = time.perf_counter_ns
    out = []
    try:
        for _ in range(n):
            t = clock()
            gateway.call("stripe", "charge", _fake_sdk_call, meter=_meter, owner=owner)
            out.append(clock() - t)
    finally:
        if variant == ASYNC_COMMIT:
            with connection.cursor() as cur:
                cur.execute("SET synchronous_commit TO DEFAULT")
    return out


def _time_each(fn, n=COMPONENT_SAMPLES):
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t = clock()
        fn()
        out.append(clock() - t)
    return common.median(out) / 1e6


def _components(owner):
    """The gateway's steps timed one by one (median ms each), to say where the time goes."""
    from decimal import Decimal

    from django.utils import timezone

    from integrations import breaker, limiter, metrics
    from integrations.models import ProviderCall
    from integrations.registry import get_provider
    from integrations.usage import _budgets, call_record

    def write():
        call_record(
            ProviderCall(
                provider="stripe",
                operation="charge",
                owner_id=owner.pk,
                outcome="ok",
                http_status=200,
                latency_ms=0.01,
                units={"amount_usd": 10},
                cost_usd=Decimal("0.59"),
                created_at=timezone.now(),
            )
        )

    def prom():
        metrics.provider_calls.labels("stripe", "charge", "ok").inc()
        metrics.provider_latency.labels("stripe").observe(0.00001)
        metrics.provider_cost.labels("stripe").inc(0.59)

    steps = [
        ("provider configured check", lambda: get_provider("stripe").missing()),
        (
            "rate-limit token and the breaker's state (one Redis Lua)",
            lambda: limiter.take("stripe", breaker_key=breaker.state_key("stripe")),
        ),
        ("breaker before_call (Redis Lua; only when the circuit is not closed)", lambda: breaker.before_call("stripe")),
        ("ProviderCall row + both roll-ups (PostgreSQL, one statement, autocommit)", write),
        ("budget lookup (cache get, Redis)", lambda: _budgets("stripe")),
        ("Prometheus metrics", prom),
    ]
    return [(name, _time_each(fn)) for name, fn in steps]


def _round_trip_floor():
    """Median ms of a bare PostgreSQL `SELECT 1` and a Redis PING from this process."""
    from django.db import connection

    from integrations.redis import get_client

    client = get_client()

    def select_one():
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    return _time_each(select_one), _time_each(client.ping)


def run():
    reason = common.setup()
    if reason:
        return reason
    from django.contrib.auth import get_user_model
    from django.db import connection

    from integrations import breaker
    from integrations.models import ProviderCall, UsageRollup

    owner, _ = get_user_model().objects.get_or_create(username=OWNER)
    breaker.reset("stripe")
    load = common.machine_load()
    try:
        _time_gateway(WARMUP, owner)  # connections, script loads, the hour's roll-up row
        runs = []
        for run_no in range(RUNS):
            samples = {name: [] for name in ("bare", *VARIANTS)}
            for pair in range(PAIRS):
                order = ["bare", *VARIANTS]
                shift = (run_no * PAIRS + pair) % len(order)
                # Rotate the order, so no variant always follows the same one.
                for name in order[shift:] + order[:shift]:
                    samples[name] += _time_bare(BATCH) if name == "bare" else _time_gateway(BATCH, owner, name)
            bare_med = common.median(samples["bare"]) / 1e6
            row = {"bare_med": bare_med}
            for name in VARIANTS:
                gw = samples[name]
                row[name] = {
                    "gw_med": common.median(gw) / 1e6,
                    "gw_p99": common.percentile(gw, 99) / 1e6,
                    "over_med": common.median(gw) / 1e6 - bare_med,
                    "over_p99": common.percentile(gw, 99) / 1e6 - bare_med,
                    "calls_per_s": len(gw) / (sum(gw) / 1e9),
                }
            runs.append(row)
        components = _components(owner)
        pg_rtt, redis_rtt = _round_trip_floor()
        with connection.cursor() as cur:
            cur.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [ProviderCall._meta.db_table])
            log_rows = cur.fetchone()[0]
        where = common.where()
    finally:
        ProviderCall.objects.filter(owner=owner).delete()
        UsageRollup.objects.filter(owner=owner).delete()
        breaker.reset("stripe")

    def med(name, key):
        return common.median([r[name][key] for r in runs])

    bare_med = common.median([r["bare_med"] for r in runs])
    headline = med(AS_IS, "over_med")
    verdict = "met" if headline < TARGET_MS else "**missed**"
    lines = [
        f'`gateway.call("stripe", "charge", fake, meter=..., owner=user)` against calling `fake()` bare, '
        f"{RUNS} runs x {PAIRS} rounds of {BATCH}-call batches (bare and each variant in rotating order; "
        f"{RUNS * PAIRS * BATCH} calls per variant) after {WARMUP} warm-up calls. One thread, in-process. "
        f"{where}; the call log held ~{max(log_rows, 0):,} rows; machine at start: {load}.",
        "",
        f"**Median added time per call: {headline:.3f} ms** (target < {TARGET_MS} ms: {verdict}); "
        f"p99 added: {med(AS_IS, 'over_p99'):.3f} ms; the bare call takes {bare_med * 1000:.2f} us.",
        "",
        "Per run, the gateway as it is:",
        "",
        common.table(
            [
                "run",
                "bare median (ms)",
                "gateway median (ms)",
                "gateway p99 (ms)",
                "added median (ms)",
                "added p99 (ms)",
                "calls/s",
            ],
            [
                [
                    i + 1,
                    f"{r['bare_med']:.5f}",
                    f"{r[AS_IS]['gw_med']:.3f}",
                    f"{r[AS_IS]['gw_p99']:.3f}",
                    f"{r[AS_IS]['over_med']:.3f}",
                    f"{r[AS_IS]['over_p99']:.3f}",
                    f"{r[AS_IS]['calls_per_s']:.0f}",
                ]
                for i, r in enumerate(runs)
            ]
            + [
                [
                    "**median**",
                    f"{bare_med:.5f}",
                    f"{med(AS_IS, 'gw_med'):.3f}",
                    f"{med(AS_IS, 'gw_p99'):.3f}",
                    f"**{headline:.3f}**",
                    f"{med(AS_IS, 'over_p99'):.3f}",
                    f"{med(AS_IS, 'calls_per_s'):.0f}",
                ]
            ],
        ),
        "",
        "What-if variant measured in the same runs (medians of runs). It changes only how the call's "
        "PostgreSQL write commits, from outside the gateway: `SET synchronous_commit TO off` on the "
        "connection (the commit does not wait for the WAL flush):",
        "",
        common.table(
            ["variant", "added median (ms)", "added p99 (ms)", "calls/s", "vs as is"],
            [
                [
                    name,
                    f"{med(name, 'over_med'):.3f}",
                    f"{med(name, 'over_p99'):.3f}",
                    f"{med(name, 'calls_per_s'):.0f}",
                    f"{med(name, 'over_med') / headline:.2f}x",
                ]
                for name in VARIANTS
            ],
        ),
        "",
        f"Where the time goes: each step timed alone ({COMPONENT_SAMPLES} calls, median). "
        f"Round-trip floor from this process: PostgreSQL `SELECT 1` {pg_rtt:.3f} ms, Redis PING {redis_rtt:.3f} ms.",
        "",
        common.table(
            ["step", "median (ms)"],
            [[n, f"{ms:.3f}"] for n, ms in components] + [["sum of steps", f"{sum(ms for _, ms in components):.3f}"]],
        ),
        "",
        "The call's row and roll-ups are one autocommit statement that waits for its WAL flush; with the "
        "Redis round trip (the token, which also reads a closed breaker) they make up the figure; the sum of "
        "steps counts before_call, which a call with a closed circuit does not make. The bench's rows are "
        "deleted afterwards.",
    ]
    return "\n".join(lines)
