"""Scale-out: outbound jobs/s with 1, 2 and 4 Celery worker processes on a fake instant provider.

Each measurement queues JOBS outbound jobs (bench.hookapp.tasks.outbound_job: one gateway call to an
in-process fake that answers at once, so the figure is the hub's own per-job cost: task, limiter and
breaker in Redis, ProviderCall row and usage roll-up in PostgreSQL), then starts one worker node with
--concurrency N (N prefork processes, prefetch 1, late acks) and times it from ready until every job
ran (each job counts itself in Redis). Process counts alternate within each round; medians over
ROUNDS rounds. A last row runs N=2 over RabbitMQ (CELERY_BROKER_URL=amqp://...) when one answers at
127.0.0.1:5672, to show the broker is a setting, not a code change. Beside each 1- and 2-process
measurement run the controls (bench.hookapp.tasks.control_job: the same task class and message, pure CPU
work of BENCH_SCALEOUT_CONTROL_MS milliseconds in place of the gateway call, nothing shared), what Celery's
prefork pool gives a job of that size on these cores; and before each, the machine's own 2-process ceiling.

    BENCH_SCALEOUT_JOBS=2000 BENCH_SCALEOUT_ROUNDS=3 BENCH_SCALEOUT_CONTROL_MS=0.8,8 python bench/run.py scaleout
"""

import multiprocessing
import os
import subprocess
import time

from bench import common

TITLE = "Scale-out: outbound jobs/s with 1, 2 and 4 Celery worker processes"

JOBS = int(os.environ.get("BENCH_SCALEOUT_JOBS", "1500"))
ROUNDS = int(os.environ.get("BENCH_SCALEOUT_ROUNDS", "2"))
PROCESSES = (1, 2, 4)
TARGET = 1.8
# The control jobs' CPU in ms: the first about what an outbound job costs in its pool child (task and call-log
# drainer threads, bench/profile_scaleout_split.py), so its worker does the same work per job but for what the hub
# shares (PostgreSQL, the limiter's Redis); the second ten times that, where Celery's own cost per message is small.
CONTROL_MS = tuple(float(x) for x in os.environ.get("BENCH_SCALEOUT_CONTROL_MS", "0.8,8").split(","))
CONTROL_PROCESSES = (1, 2)
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

PUBLISH = """
import django, sys, time
django.setup()
from bench.hookapp.tasks import control_job, outbound_job
cpu_ms = float(sys.argv[2]) if len(sys.argv) > 2 else None
t = time.perf_counter()
with outbound_job.app.producer_or_acquire() as producer:
    for i in range(int(sys.argv[1])):
        if cpu_ms is None:
            outbound_job.apply_async((i,), producer=producer)
        else:
            control_job.apply_async((i, cpu_ms), producer=producer)
print(time.perf_counter() - t)
"""


def _spin(start, results):
    """bench/run.py's reference loop, five times over: pure Python, no I/O, no lock shared with anyone."""
    start.wait()
    started = time.perf_counter()
    for _ in range(5):
        total, seen = 0, {}
        for i in range(1_000_000):
            total += i
            seen[i & 1023] = total
    results.put(time.perf_counter() - started)


def _cpu_ceiling(pairs=3):
    """What two processes of pure CPU work do on this machine just now, against one: the most any 2-process
    layout can give over one on these cores, whatever the work. A pair is the loops of one process alone, then of
    two at once (started together); the loops per second of the two over the one's, median of `pairs`."""
    ctx = multiprocessing.get_context("fork")

    def rate(n):
        start, results = ctx.Event(), ctx.Queue()
        children = [ctx.Process(target=_spin, args=(start, results)) for _ in range(n)]
        for child in children:
            child.start()
        start.set()
        done = sum(1 / results.get() for _ in children)
        for child in children:
            child.join()
        return done

    return common.median([rate(2) / rate(1) for _ in range(pairs)])


def _rabbit_up():
    import kombu

    try:
        with kombu.Connection(RABBITMQ_URL, connect_timeout=2) as conn:
            conn.connect()
            return True
    except Exception:  # noqa: BLE001 - no broker there: the row is left out, with the reason
        return False


def _purge(broker_url):
    """Empty the default queue on `broker_url` (a run aborted earlier may have left jobs)."""
    import kombu

    with kombu.Connection(broker_url, connect_timeout=3) as conn:
        try:
            conn.default_channel.queue_purge("default")
        except Exception:  # noqa: BLE001 - the queue does not exist yet
            pass


def _one(processes, broker_url, control_ms=None, jobs=JOBS):
    from bench.hookapp.tasks import DONE_KEY
    from integrations.models import ProviderCall
    from integrations.redis import get_client

    redis = get_client()
    redis.delete(DONE_KEY)
    ProviderCall.objects.filter(provider="stripe", operation="charge").delete()
    _purge(broker_url)
    env = {**common._env(), "CELERY_BROKER_URL": broker_url}
    publish = subprocess.run(
        [common.PYTHON, "-c", PUBLISH, str(jobs), *([str(control_ms)] if control_ms else [])],
        cwd=common.ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    os.environ["CELERY_BROKER_URL"] = broker_url  # the worker child inherits it
    try:
        with common.celery_worker(concurrency=processes, loglevel="WARNING") as worker:
            meter = common.CpuMeter({"Celery worker": worker.pgid}).start()
            started = time.monotonic()
            deadline = started + 300
            while redis.hlen(DONE_KEY) < jobs and time.monotonic() < deadline:
                time.sleep(0.02)
            elapsed = time.monotonic() - started
            cpu = meter.stop()
    finally:
        os.environ.pop("CELERY_BROKER_URL", None)
    done = redis.hlen(DONE_KEY)
    twice = sum(1 for v in redis.hvals(DONE_KEY) if int(v) > 1)
    return {
        "processes": processes,
        "rate": done / elapsed,
        "done": done,
        "twice": twice,
        "publish_per_s": jobs / float(publish.stdout.strip().splitlines()[-1]),
        "cpu_ms": {k: v * 1000 / max(done, 1) for k, v in cpu.items()},
        # Cores the work kept busy: the worker node's processes, and PostgreSQL and Redis serving it.
        "cores": sum(cpu.get(k, 0) for k in ("Celery worker", "PostgreSQL", "Redis")) / elapsed,
        "load": common.machine_load(),
    }


def _row(label, runs, base):
    rate = common.median([x["rate"] for x in runs])
    cpu = runs[-1]["cpu_ms"]
    return [
        label,
        f"**{rate:.0f}**",
        f"{rate / base:.2f}x",
        f"{common.median([x['cores'] for x in runs]):.2f}",
        ", ".join(f"{x['rate']:.0f}" for x in runs),
        ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items()) if v >= 0.01),
        f"{sum(x['done'] for x in runs)} / {sum(x['twice'] for x in runs)}",
        runs[-1]["load"],
    ]


def run():
    reason = common.setup()
    if reason:
        return reason
    from django.conf import settings

    redis_broker = settings.CELERY_BROKER_URL
    results = {n: [] for n in PROCESSES}
    controls = {(ms, n): [] for ms in CONTROL_MS for n in CONTROL_PROCESSES}
    ceilings = []
    for r in range(ROUNDS):
        order = PROCESSES if r % 2 == 0 else tuple(reversed(PROCESSES))
        for n in order:
            ceilings.append(_cpu_ceiling())  # beside each measurement, as the machine is just then
            results[n].append(_one(n, redis_broker))
            for ms in CONTROL_MS if n in CONTROL_PROCESSES else ():
                # As many jobs as take about as long as the hub's (at least 200).
                jobs = max(200, int(JOBS * min(1.0, CONTROL_MS[0] / ms)))
                controls[ms, n].append(_one(n, redis_broker, control_ms=ms, jobs=jobs))
    rabbit = _one(2, RABBITMQ_URL) if _rabbit_up() else None

    def rate(runs):
        return common.median([x["rate"] for x in runs])

    base = rate(results[1])
    rows = [_row(f"{n} process{'es' if n > 1 else ''}, Redis broker", results[n], base) for n in PROCESSES]
    if rabbit:
        rows.append(_row("2 processes, RabbitMQ broker", [rabbit], base))
    for (ms, n), runs in controls.items():
        label = f"{n} process{'es' if n > 1 else ''}, control job ({ms:g} ms of CPU, nothing shared)"
        rows.append(_row(label, runs, rate(controls[ms, 1])))
    two = rate(results[2]) / base
    control_two = {ms: rate(controls[ms, 2]) / rate(controls[ms, 1]) for ms in CONTROL_MS}

    def busy(runs):
        return common.median([x["cores"] for x in runs])

    lines = [
        f"{JOBS} queued outbound jobs per measurement (one gateway call each to an in-process instant fake: "
        f"Celery task, limiter + breaker in Redis, ProviderCall row + usage roll-up in PostgreSQL), one worker node "
        f"with --concurrency N (prefork, prefetch 1, late acks), timed from ready to the last job; process counts "
        f"alternate, {ROUNDS} rounds, medians. {common.where()}. The machine has {os.cpu_count()} cores shared by the "
        "worker, PostgreSQL and Redis, and by other people's work (load column).",
        "",
        f"Target: 2 processes >= {TARGET}x one: **{'met' if two >= TARGET else 'missed'}** ({two:.2f}x). With 2 cores, "
        "4 processes cannot add CPU; they show what waiting on PostgreSQL and Redis round trips leaves on the table.",
        "",
        f"The machine's own ceiling, measured before each measurement above: two processes of pure CPU work (bench/run.py's "
        f"reference loop, no I/O, nothing shared) do **{common.median(ceilings):.2f}x** one process's work (median; each: "
        f"{', '.join(f'{c:.2f}' for c in ceilings)}). No 2-process layout of any work can beat that ratio on these cores "
        f"just then; the hub's 2 processes reach {two / common.median(ceilings):.0%} of it.",
        "",
        "The controls (same rounds, each beside the hub's job): the same task class, message and count, with "
        "pure CPU work in place of the gateway call, so nothing is shared but Celery's broker. 2 processes do "
        + ", ".join(f"**{control_two[ms]:.2f}x** one for a job of {ms:g} ms" for ms in CONTROL_MS)
        + f" (the first about an outbound job's CPU in its pool child). What Celery's prefork pool gives a job "
        f"of that size on these cores, beside the hub's {two:.2f}x.",
        "",
        f"Cores kept busy (the worker node's processes, PostgreSQL and Redis), 1 / 2 processes: hub "
        f"**{busy(results[1]):.2f} / {busy(results[2]):.2f}**, "
        + ", ".join(f"{ms:g} ms control {busy(controls[ms, 1]):.2f} / {busy(controls[ms, 2]):.2f}" for ms in CONTROL_MS)
        + ". Between two jobs a pool child waits for its node's main process (it acks the job, takes the next "
        "message and hands it over); the shorter the job, the more of the child's time that is, so two processes "
        "leave part of the second core idle however little the job itself shares.",
        "",
        common.table(
            [
                "workers",
                "jobs/s (median)",
                "vs 1 process",
                "cores busy (worker, PostgreSQL, Redis)",
                "each round",
                "CPU ms per job (last round)",
                "jobs done / run twice",
                "machine at the end",
            ],
            rows,
        ),
    ]
    if rabbit is None:
        lines += ["", f"RabbitMQ row skipped: nothing answered at {RABBITMQ_URL.rsplit('@', 1)[-1]}."]
    return "\n".join(lines)
