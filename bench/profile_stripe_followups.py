"""Where the CPU of the Stripe drain's follow-up tasks goes: each run in-process as a worker runs it.

Not a suite (bench/run.py runs bench_*.py only): a tool for issue 11's "CPU
per event" work, beside profile_stripe_drain.py. Each event the drain applies
queues one follow-up task: a success the fee look-up (`payments.payment_fee_record`,
a Stripe request answered by bench_stripe_events' stand-in, started here as
that suite starts it), a failure the owner's notice (`payments.payment_failed_notify`,
Django's locmem mail backend). This tool makes N succeeded payments and N
failed invoices, then runs those tasks in this process through Celery's own
tracer as a prefork child runs them (`is_eager` false, the signals, the
Django worker fix-up that runs around every task), and prints the CPU per task
(time.process_time) and, with --profile, a cProfile by CPU time.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/profile_stripe_followups.py [N] [--profile] [--task fee|notify]
    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/profile_stripe_followups.py [N] --worker [--task fee|notify]

--batch [K]: the fee look-ups go as the drain now sends them, `payments.payment_fees_record`
messages of K payments each (default task_base.BATCH_SEND_MAX); the CPU is then per payment.

In-process it leaves out the worker's own message handling (reading from the
broker, the pool's hand-over to the child, the ack). With --worker the tasks
go through the broker (REDIS_URL) to a real worker instead (prefork, one child,
queue payments, as bench_stripe_events starts it but with one child), and the
CPU per task is that worker's whole process group's, read from /proc (so it
includes its idle polling while the tasks are sent). Run it with no other
worker consuming `payments` on that Redis.

The bench's worker runs with --loglevel WARNING; LOG_LEVEL=INFO measures what
a worker at INFO (docker-compose's) pays for its log lines.
"""

import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # the bench's worker runs at --loglevel WARNING
os.environ["RATE_LIMITS_JSON"] = json.dumps({"stripe": {"requests": {"rate": 100000, "burst": 100000}}})


def _worker_tracer(app, task):
    """`run(args)`: the task traced as a prefork child traces it (fast_trace_task), signals and fix-ups included."""
    from celery.app.trace import build_tracer

    tracer = build_tracer(task.name, task, app=app, eager=False, hostname="profile@localhost")

    def run(args):
        task_id = str(uuid.uuid4())
        request = {
            "id": task_id,
            "task": task.name,
            "args": args,
            "kwargs": {},
            "retries": 0,
            "is_eager": False,
            "hostname": "profile@localhost",
            "delivery_info": {"exchange": "", "routing_key": "payments", "priority": 0, "redelivered": False},
            "request_id": uuid.uuid4().hex,
            "hub_enqueued_at": time.time(),
        }
        retval, info, _timing, _ = tracer(task_id, args, {}, request)
        if info is not None:
            raise RuntimeError(f"{task.name}{tuple(args)} failed: {info.exception!r}")
        return retval

    return run


def _rows(n, tag):
    """N succeeded payments waiting for their fee, N failed invoices waiting for their notice: (payment ids, invoice ids)."""
    from django.utils import timezone

    from bench.bench_stripe_events import _hub_payments
    from payments.models import Invoice, Payment

    paid = [pk for pk, _pi in _hub_payments(n, tag + "s")]
    Payment.objects.filter(pk__in=paid).update(status="succeeded")
    Invoice.objects.filter(payments__pk__in=paid).update(status="paid", paid_at=timezone.now())
    failed = [pk for pk, _pi in _hub_payments(n, tag + "f")]
    Payment.objects.filter(pk__in=failed).update(status="failed", failure_code="card_declined")
    invoices = list(Invoice.objects.filter(payments__pk__in=failed).values_list("pk", flat=True))
    Invoice.objects.filter(pk__in=invoices).update(status="failed")
    return paid, invoices


def main(argv):
    from bench import common

    port = common.free_port()
    os.environ["STRIPE_API_BASE"] = f"http://127.0.0.1:{port}"
    stand_in = subprocess.Popen(
        [sys.executable, "-c", f"from bench.bench_stripe_events import serve_stripe; serve_stripe({port})"],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        common.wait_port(port, 20, "the Stripe stand-in")
        return _measure(argv)
    finally:
        stand_in.terminate()
        stand_in.wait(10)


def _measure(argv):
    from bench import common

    reason = common.setup()
    if reason:
        print(reason)
        return 1
    from django.core import mail

    from bench.bench_stripe_events import _hub_reset
    from config.celery import app
    from payments import tasks
    from payments.models import Payment

    count = next((int(a) for i, a in enumerate(argv) if a.isdigit() and argv[i - 1 : i] != ["--batch"]), 300)
    if "--worker" in argv:
        return _measure_worker(argv, count)
    which = argv[argv.index("--task") + 1] if "--task" in argv else "both"
    _hub_reset()
    paid, invoices = _rows(count, f"fu{os.getpid()}")
    # What `celery worker` installs at start (DjangoFixup.on_worker_init): the per-task database and cache hooks.
    fixup = next(f for f in app._fixups if hasattr(f, "worker_fixup"))
    fixup.worker_fixup.install()
    fee, notify = _worker_tracer(app, tasks.payment_fee_record), _worker_tracer(app, tasks.payment_failed_notify)
    fees = _worker_tracer(app, tasks.payment_fees_record) if _batch_size(argv) else None
    # One warm-up run each (imports, the Stripe client, first connections), as a worker has had by then.
    fee([paid.pop()])
    notify([invoices.pop(), "warm-up"])
    mail.outbox = []

    runs = []
    size = _batch_size(argv)
    if which in ("both", "fee") and size:
        runs.append((f"payment_fees_record (batches of {size})", fees, [[chunk] for chunk in _chunks(paid, size)]))
    elif which in ("both", "fee"):
        runs.append(("payment_fee_record", fee, [[pk] for pk in paid]))
    if which in ("both", "notify"):
        runs.append(("payment_failed_notify", notify, [[pk, "Insufficient funds."] for pk in invoices]))
    profile = cProfile.Profile(time.process_time) if "--profile" in argv else None
    for name, run, calls in runs:
        if profile:
            profile.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        results = [run(args) for args in calls]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profile:
            profile.disable()
        if size and name.startswith("payment_fees_record"):
            results, per = [r for batch in results for r in batch], "payment"
        else:
            per = "task"
        print(
            f"{name}: {len(calls)} tasks, {len(results)} {per}s ({dict(Counter(map(str, results)))}); "
            f"CPU {cpu * 1000 / len(results):.3f} ms per {per} (wall {wall * 1000 / len(results):.3f} ms)"
            f"{' with the profiler on' if profile else ''}"
        )
    unrecorded = Payment.objects.filter(pk__in=paid, fee_recorded=False).count()
    print(f"fees left unrecorded: {unrecorded}; notices sent: {len(mail.outbox)}")
    if profile:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        if os.environ.get("PROFILE_DUMP"):
            stats.dump_stats(os.environ["PROFILE_DUMP"])
    return 0


def _measure_worker(argv, count):
    from bench import common
    from bench.bench_stripe_events import _hub_reset
    from integrations.models import ProviderCall
    from integrations.redis import get_client
    from payments import tasks
    from payments.models import Payment

    which = argv[argv.index("--task") + 1] if "--task" in argv else "both"
    _hub_reset()
    paid, invoices = _rows(count, f"fw{os.getpid()}")
    level = os.environ["LOG_LEVEL"]
    with common.celery_worker(concurrency=1, queues="payments", loglevel=level) as worker:
        # One of each first, as in-process: the child's imports and first connections are not per task.
        calls = ProviderCall.objects.filter(operation__in=("charge", "mail.send"))
        warmed = calls.count() + 2
        tasks.payment_fee_record.delay(paid.pop())
        tasks.payment_failed_notify.delay(invoices.pop(), "warm-up")
        _wait(lambda: calls.count() >= warmed)
        runs = []
        size = _batch_size(argv)
        if which in ("both", "fee") and size:
            runs.append(
                (
                    f"payment_fees_record (batches of {size})",
                    tasks.payment_fees_record,
                    [(c,) for c in _chunks(paid, size)],
                )
            )
        elif which in ("both", "fee"):
            runs.append(("payment_fee_record", tasks.payment_fee_record, [(pk,) for pk in paid]))
        if which in ("both", "notify"):
            runs.append(
                ("payment_failed_notify", tasks.payment_failed_notify, [(pk, "Insufficient funds.") for pk in invoices])
            )
        for name, task, arglists in runs:
            before = calls.count()
            meter = common.CpuMeter({"worker": worker.pgid}).start()
            started = time.perf_counter()
            with task.app.producer_or_acquire() as producer, producer.batch():
                for args in arglists:
                    task.apply_async(args=args, producer=producer)
            n = sum(len(args[0]) if isinstance(args[0], list) else 1 for args in arglists)
            _wait(lambda wanted=before + n: calls.count() >= wanted)
            cpu, wall = meter.stop()["worker"], time.perf_counter() - started
            per = "payment" if n != len(arglists) else "task"
            print(
                f"{name}: {len(arglists)} tasks through a worker (prefork, 1 child, --loglevel {level}); "
                f"worker CPU {cpu * 1000 / n:.3f} ms per {per} (wall {wall * 1000 / n:.3f} ms)"
            )
        _wait(lambda: not Payment.objects.filter(pk__in=paid, fee_recorded=False).exists())  # the last row's UPDATE
    from integrations.task_base import redis_queue_lists

    left = sum(get_client().llen(key) for key in redis_queue_lists("payments"))
    print(f"every fee recorded; left in the queue: {left}")
    return 0


def _batch_size(argv):
    """Payments per fee look-up message with --batch [K], else 0 (one message per payment)."""
    if "--batch" not in argv:
        return 0
    at = argv.index("--batch") + 1
    if at < len(argv) and argv[at].isdigit():
        return int(argv[at])
    from integrations.task_base import BATCH_SEND_MAX

    return BATCH_SEND_MAX


def _chunks(ids, size):
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _wait(done, timeout=300):
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish the tasks in time")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
