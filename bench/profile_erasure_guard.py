"""What the erasure check costs the call log's writers (integrations.erasing): old and new, interleaved, in process.

Not a suite (bench/run.py runs bench_*.py only). Against the bench database, for one owner no erasure covers:

- a row written at once (usage.call_record outside a transaction: a failed attempt, refund.create, a call in a
  web request or while Redis is down): before, its one statement in one round trip (aio.at_once); now the owner's
  lock and the erasure read go first in the same query string (privacy_owner_rows_guard);
- a web worker's batch of BATCH rows (gateway.batchlog._write_rows in its transaction): now one more round trip
  per batch (the owners' locks and the read: privacy_owner_erasures);
- an AI answer booked step by step (Booking.owned_now in its transaction): one more round trip.

Each variant runs ROUNDS times in turn with the other (old, new, old, new ...), each round N writes; printed: the
median over rounds of the per-write wall time and of this process's CPU per write.

    DATABASE_URL=postgres://.../b_NAME REDIS_URL=redis://.../DB .venv/bin/python bench/profile_erasure_guard.py
"""

import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ.setdefault("LOG_LEVEL", "WARNING")

ROUNDS = 15
N = 200
BATCH = 50


def main():
    from bench import common

    why = common.setup()
    if why:
        sys.exit(why)
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from integrations.aio import at_once
    from integrations.erasing import pseudonyms_now
    from integrations.gateway import batchlog
    from integrations.gateway.calllog import Attempt
    from integrations.models import ProviderCall
    from integrations.usage import call_record, call_record_statement, call_recorded_as, calls_record

    owner, _ = get_user_model().objects.get_or_create(username="bench-erasure-guard")
    others = [get_user_model().objects.get_or_create(username=f"bench-erasure-guard-{i}")[0] for i in range(10)]

    def row(owner_id):
        return ProviderCall(
            provider="stripe",
            operation="charge",
            owner_id=owner_id,
            outcome="ok",
            http_status=200,
            latency_ms=12.5,
            units={"amount_usd": 10},
            cost_usd=Decimal("0.59"),
            created_at=timezone.now(),
        )

    def direct_old():
        call = row(owner.pk)
        call_recorded_as(call, at_once([call_record_statement(call)])[0])

    def direct_new():
        call_record(row(owner.pk))

    def batch_rows():
        rows = []
        for i in range(BATCH):
            att = Attempt("stripe", "charge", others[i % len(others)], None, None, None, 1)
            att.record(http_status=200, units={"amount_usd": 10}, cost_usd="0.59")
            rows.append([att, 12.5, "req-bench", 0])
        return rows

    def batch_old():
        rows = batch_rows()
        with transaction.atomic():
            calls_record([batchlog.call_row(a, outcome="ok", latency_ms=ms, request_id=r) for a, ms, r, _ in rows])

    def batch_new():
        rows = batch_rows()
        with transaction.atomic():
            batchlog._write_rows(rows)

    def booking_old():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # stands for the booking's own statements, the same in both

    def booking_new():
        with transaction.atomic():
            pseudonyms_now([owner.pk])
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")

    suites = [
        ("row written at once (call_record)", direct_old, direct_new, N, 1),
        (f"web batch of {BATCH} rows (batchlog)", batch_old, batch_new, N // 20, BATCH),
        ("AI booking step by step (owned_now)", booking_old, booking_new, N, 1),
    ]
    for name, old, new, n, per in suites:
        for fn in (old, new):  # warm: statement caches, the first roll-up rows of the hour
            for _ in range(20):
                fn()
        results = {"old": ([], []), "new": ([], [])}
        for _ in range(ROUNDS):
            for label, fn in (("old", old), ("new", new)):
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(n):
                    fn()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                results[label][0].append(wall / n / per * 1e6)
                results[label][1].append(cpu / n / per * 1e6)
        print(f"\n{name}: median of {ROUNDS} rounds x {n} writes, per row (us)")
        for label in ("old", "new"):
            walls, cpus = results[label]
            print(
                f"  {label}: wall {statistics.median(walls):8.1f}   CPU (this process) {statistics.median(cpus):8.1f}"
            )
        added = statistics.median(results["new"][0]) - statistics.median(results["old"][0])
        added_cpu = statistics.median(results["new"][1]) - statistics.median(results["old"][1])
        print(f"  added: wall {added:+8.1f}   CPU {added_cpu:+8.1f}")
    ProviderCall.objects.filter(owner__username__startswith="bench-erasure-guard").delete()


if __name__ == "__main__":
    main()
