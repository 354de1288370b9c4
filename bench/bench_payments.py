"""A burst of signed Stripe events through the running inbox (gunicorn) and workers (Celery).

Starts its own gunicorn (as production serves the hub) and Celery worker on the
bench settings (bench.common), plus a local stand-in for Stripe's API (the fee look-up after each
success), all on 127.0.0.1. For each of N/2 invoices it sends
`payment_intent.payment_failed` then `payment_intent.succeeded` (10 s later in
Stripe's clock); 10 % of all events arrive out of order (the late failure after
the success) and 20 % more deliveries are exact duplicates. It measures acks/s
and the time until every event is processed, then checks the end state: every
invoice paid, every event stored once and applied once, one fee record per payment.

    BENCH_PAYMENTS_EVENTS=5000 BENCH_PAYMENTS_RUNS=1 python bench/run.py payments
"""

import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench import common

TITLE = "Payments: a burst of signed Stripe events through the inbox and workers"

WEBHOOK_SECRET = "whsec_bench_payments"
DEADLINE_SECONDS = float(os.environ.get("BENCH_PAYMENTS_DEADLINE", "240"))


def _sign(body):
    t = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _plan(payments, n_events, rng):
    """Deliveries: (event, body) in send order, with out-of-order pairs and duplicates."""
    base = int(time.time()) - 60
    pairs = []
    for i, p in enumerate(payments[: n_events // 2]):
        intent = {
            "id": p.payment_intent_id,
            "object": "payment_intent",
            "amount": p.amount,
            "currency": p.currency,
            "metadata": {"hub_payment_id": str(p.pk)},
        }
        failed = {
            "id": f"evt_bench_f{p.pk}",
            "object": "event",
            "type": "payment_intent.payment_failed",
            "created": base + i % 50,
            "data": {
                "object": {
                    **intent,
                    "status": "requires_payment_method",
                    "last_payment_error": {
                        "code": "card_declined",
                        "decline_code": "insufficient_funds",
                        "message": "Insufficient funds.",
                    },
                }
            },
        }
        succeeded = {
            "id": f"evt_bench_s{p.pk}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": base + i % 50 + 10,
            "data": {"object": {**intent, "status": "succeeded"}},
        }
        pairs.append([failed, succeeded])
    # 10 % of all events late: the failure of every fifth pair is sent after its success.
    late = set(rng.sample(range(len(pairs)), len(pairs) // 5))
    stream = []
    for i, pair in enumerate(pairs):
        stream.extend(reversed(pair) if i in late else pair)
    # Interleave pairs a little (deliveries are concurrent anyway), keeping each pair's order.
    deliveries = [json.dumps(e).encode() for e in stream]
    duplicates = rng.sample(range(len(deliveries)), len(deliveries) // 5)
    for d in sorted(duplicates, reverse=True):
        deliveries.insert(min(len(deliveries), d + rng.randint(1, 40)), deliveries[d])
    return deliveries, len(stream), len(late), len(duplicates)


def _one_run(n_events, rng, base_url):
    import requests
    from django.db import connection

    from integrations.models import Alert, ProviderCall, WebhookEvent
    from payments.models import Invoice, Payment, Refund

    # A clean slate in the bench database.
    WebhookEvent.objects.filter(provider="stripe").delete()
    Refund.objects.all().delete()
    Payment.objects.all().delete()
    Invoice.objects.all().delete()
    ProviderCall.objects.filter(provider="stripe").delete()
    Alert.objects.all().delete()

    from django.contrib.auth import get_user_model

    owner, _ = get_user_model().objects.get_or_create(username="bench-payer", defaults={"email": "payer@bench.local"})
    n_pairs = n_events // 2
    invoices = Invoice.objects.bulk_create(
        [
            Invoice(owner=owner, amount=1000 + i, currency="usd", number=f"BENCH-{i:06d}-{rng.randint(0, 10**9)}")
            for i in range(n_pairs)
        ]
    )
    payments = Payment.objects.bulk_create(
        [
            Payment(
                invoice=inv,
                attempt=1,
                status="pending",
                amount=inv.amount,
                currency="usd",
                payment_intent_id=f"pi_bench_{inv.pk}",
                idempotency_key=f"hub-invoice-{inv.pk}-attempt-1",
            )
            for inv in invoices
        ]
    )
    deliveries, unique, late, dups = _plan(payments, n_events, rng)
    connection.close()

    url = f"{base_url}/webhooks/stripe/"
    local = threading.local()
    statuses = {}
    lock = threading.Lock()

    def send(body):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        r = session.post(
            url, data=body, headers={"Content-Type": "application/json", "Stripe-Signature": _sign(body)}, timeout=30
        )
        with lock:
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send, deliveries))
    acked = time.monotonic() - started

    done_at = None
    stop = started + DEADLINE_SECONDS
    while time.monotonic() < stop:
        pending = WebhookEvent.objects.filter(provider="stripe").exclude(status__in=["processed", "ignored"]).count()
        stored = WebhookEvent.objects.filter(provider="stripe").count()
        if stored >= unique and pending == 0:
            done_at = time.monotonic() - started
            break
        time.sleep(0.2)
    # Fee look-ups run after each success; give them the rest of the window.
    while time.monotonic() < stop and ProviderCall.objects.filter(operation="charge", outcome="ok").count() < n_pairs:
        time.sleep(0.2)

    events = WebhookEvent.objects.filter(provider="stripe")
    checks = {
        "stored once per event id": events.count() == unique,
        "every event processed exactly once (1 attempt)": events.exclude(status="processed").count() == 0
        and events.exclude(attempts=1).count() == 0,
        "every invoice paid": Invoice.objects.exclude(status="paid").count() == 0,
        "every payment succeeded": Payment.objects.exclude(status="succeeded").count() == 0,
        "one fee record per payment": ProviderCall.objects.filter(operation="charge", outcome="ok").count() == n_pairs
        and Payment.objects.filter(fee_recorded=False).count() == 0,
    }
    connection.close()
    return {
        "deliveries": len(deliveries),
        "unique": unique,
        "late": late,
        "duplicates": dups,
        "acks_per_s": len(deliveries) / acked,
        "ack_seconds": acked,
        "processed_seconds": done_at,
        "statuses": statuses,
        "checks": checks,
    }


def run():
    reason = common.setup()
    if reason:
        return reason
    n_events = int(os.environ.get("BENCH_PAYMENTS_EVENTS", "5000"))
    runs = int(os.environ.get("BENCH_PAYMENTS_RUNS", "1"))
    web_workers = int(os.environ.get("BENCH_PAYMENTS_WEB_WORKERS", "2"))
    concurrency = int(os.environ.get("BENCH_PAYMENTS_WORKER_CONCURRENCY", "2"))

    stripe_port = common.free_port()
    # The Stripe stand-in bench_stripe_events serves (the fee look-up's succeeded intent), in its own process.
    fake = subprocess.Popen(
        [sys.executable, "-c", f"from bench.bench_stripe_events import serve_stripe; serve_stripe({stripe_port})"],
        cwd=common.ROOT,
        env=common._env(),
    )
    # What the hub's children (gunicorn, Celery) read at start on top of bench.settings.
    children = {
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        # The local stand-in for Stripe is not the real API: do not pace calls to it.
        "RATE_LIMITS_JSON": json.dumps({"stripe": {"requests": {"rate": 100000, "burst": 100000}}}),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "LOG_LEVEL": "WARNING",
        "DATABASE_POOL": "true",  # as config/gunicorn.conf.py serves production
    }
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).delete("default", "payments")  # Celery queues an aborted run left
    try:
        common.wait_port(stripe_port, what="the Stripe stand-in")
        with (
            common.environ(children),
            common.gunicorn(
                workers=web_workers, worker_class="uvicorn_worker.UvicornWorker", app="config.asgi:application"
            ) as server,
            common.celery_worker(concurrency=concurrency, queues="default,payments", loglevel="WARNING"),
        ):
            load_before = os.getloadavg()[0]
            rng = random.Random(7)
            results = [_one_run(n_events, rng, server.url) for _ in range(runs)]
    finally:
        fake.terminate()
        fake.wait(timeout=10)

    rows = []
    for i, r in enumerate(results, 1):
        done = (
            f"{r['processed_seconds']:.1f}"
            if r["processed_seconds"] is not None
            else f"not within {DEADLINE_SECONDS:.0f}"
        )
        ok = all(r["checks"].values())
        rows.append(
            f"| {i} | {r['unique']} | {r['deliveries']} | {r['late']} | {r['duplicates']} | {r['acks_per_s']:.0f} | "
            f"{r['ack_seconds']:.1f} | {done} | {'yes' if ok else 'NO'} |"
        )
    acks = statistics.median(r["acks_per_s"] for r in results)
    done_times = [r["processed_seconds"] for r in results if r["processed_seconds"] is not None]
    last = results[-1]
    lines = [
        f"A burst of {n_events} unique events (`BENCH_PAYMENTS_EVENTS`, default 5,000 as the issue asks), "
        f"20 % duplicates and 10 % out of order. gunicorn {web_workers} uvicorn workers (config.asgi, as production "
        f"serves it), one Celery worker "
        f"(prefork, concurrency {concurrency}), {common.where()}; 16 client threads. Each invoice gets "
        f"`payment_failed` then `succeeded` (Stripe `created` 10 s apart); every success also triggers the fee look-up "
        f"task against a local stand-in for Stripe's API.",
        "",
        f"The machine is shared: 1-minute load average {load_before:.1f} on {os.cpu_count()} cores when the burst started, "
        f"so absolute rates are low and noisy; the end-state checks are the point.",
        "",
        "| run | unique events | deliveries | late (out of order) | duplicates | acks/s | all acked (s) | all processed (s) | end state right |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Median acks/s: **{acks:.0f}**; median time until every event is processed: "
        f"**{statistics.median(done_times):.1f} s**"
        if done_times
        else f"Median acks/s: **{acks:.0f}**; processing did not finish in time.",
        "",
        f"HTTP answers (last run): {dict(sorted(last['statuses'].items()))}. End-state checks (last run):",
        "",
        *[f"- {name}: {'yes' if ok else 'NO'}" for name, ok in last["checks"].items()],
    ]
    return "\n".join(lines)
