"""Where the webhook drain's CPU goes: the drain run in-process over stored signed Stripe events.

Not a suite (bench/run.py runs bench_*.py only): a tool for issue 11's "CPU per
event" work. It stores N events as bench_stripe_events sends them (a
payment_failed and a succeeded per payment, some late, some duplicated)
through the inbox view, then drains them batch after batch in this process,
with the Stripe handlers and the bench's handler count, and prints the CPU
per event (time.process_time), the CPU its PostgreSQL backend used per event
(when the server runs on this machine) and, with --profile, a cProfile by CPU time.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/profile_stripe_drain.py [N] [--profile] [--queries]

The handlers' tasks are sent to the broker (REDIS_URL) as in a worker, then
deleted from their queues: run it with no worker consuming `payments`.
"""

import cProfile
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_bench_stripe_events")
os.environ.setdefault("BENCH_COUNT_STRIPE", "bench:stripe-handled")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")


def main(argv):
    from bench import common

    reason = common.setup()
    if reason:
        print(reason)
        return 1
    from django.conf import settings
    from django.db import connection, reset_queries
    from django.test import RequestFactory

    from bench.bench_stripe_events import COUNT_KEY, _hub_payments, _hub_reset, _plan, _sign
    from integrations.redis import get_client
    from integrations.task_base import redis_queue_lists
    from integrations.webhooks.dispatch import drain_started
    from integrations.webhooks.inbox import inbox
    from integrations.webhooks.processing import webhook_drain

    count = next((int(a) for a in argv if a.isdigit()), 1000)
    _hub_reset()
    ids, deliveries = _plan(_hub_payments(count // 2, f"prof{os.getpid()}"), seed=1)
    factory = RequestFactory()
    for body in deliveries:
        request = factory.post(
            "/webhooks/stripe/", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=_sign(body)
        )
        assert inbox(request, "stripe").status_code == 200
    client = get_client()
    queued = [*redis_queue_lists("payments")]  # the fee look-ups wait at BACKGROUND_PRIORITY, in a list of their own
    client.delete(*redis_queue_lists("default"), *queued, COUNT_KEY)

    if "--queries" in argv:
        settings.DEBUG = True
        connection.force_debug_cursor = True
        reset_queries()
    profile = cProfile.Profile(time.process_time) if "--profile" in argv else None
    backend_cpu = _backend_cpu(connection)
    pg_cpu = backend_cpu()
    cpu, wall = time.process_time(), time.perf_counter()
    batches = 0
    if profile:
        profile.enable()
    while True:
        drain_started("stripe")
        if not webhook_drain(provider="stripe").claimed:
            break
        batches += 1
    if profile:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pg_cpu = backend_cpu() - pg_cpu if pg_cpu is not None else None
    print(
        f"{len(ids)} events in {batches} batches, {client.hlen(COUNT_KEY)} handled, "
        f"{sum(client.llen(key) for key in queued)} tasks queued; CPU {cpu * 1000 / len(ids):.3f} ms per event "
        f"(wall {wall * 1000 / len(ids):.3f} ms){' with the profiler on' if profile else ''}"
    )
    if pg_cpu is not None:
        print(f"PostgreSQL: the drain's backend used {pg_cpu * 1000 / len(ids):.3f} ms of CPU per event")
    client.delete(*queued, COUNT_KEY)
    if "--queries" in argv:
        print(f"{len(connection.queries)} queries ({len(connection.queries) / len(ids):.2f} per event); most frequent:")
        for sql, n in Counter(q["sql"][:100] for q in connection.queries).most_common(15):
            print(f"{n:6d}  {sql}")
    if profile:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(50)
        stats.sort_stats("tottime").print_stats(25)
    return 0


def _backend_cpu(connection):
    """() -> CPU seconds used so far by this connection's PostgreSQL backend (/proc: a server on this machine),
    or () -> None where it cannot be read. Coarse (clock ticks): meaningful over a whole run, not a query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        stat = Path(f"/proc/{cursor.fetchone()[0]}/stat")

    def read():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    return read


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
