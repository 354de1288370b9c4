"""A burst of signed Stripe events through the running inbox (gunicorn) and workers (Celery).

Starts its own gunicorn and Celery worker against DATABASE_URL (PostgreSQL) and
REDIS_URL, plus a local stand-in for Stripe's API (the fee look-up after each
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
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The same succeeded intent the payment tests answer the fee look-up with (stdlib only; bench/run.py puts the
# repository on sys.path).
from tests.payments.stripe_fakes import settled_intent

TITLE = "Payments: a burst of signed Stripe events through the inbox and workers"

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
WEBHOOK_SECRET = "whsec_bench_payments"
DEADLINE_SECONDS = float(os.environ.get("BENCH_PAYMENTS_DEADLINE", "240"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeStripe(BaseHTTPRequestHandler):
    """GET /v1/payment_intents/<id>: a succeeded intent with its charge's balance transaction."""

    protocol_version = "HTTP/1.1"  # keep-alive; with Nagle off below, no ~40 ms stalls

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        pi = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        body = json.dumps(settled_intent(pi)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", f"req_{pi}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _env(stripe_port):
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": env.get("SECRET_KEY") or "bench-secret-key-0123456789abcdef0123456789",
            "FIELD_ENCRYPTION_KEYS": env.get("FIELD_ENCRYPTION_KEYS") or "q8yF3v2bJm0nN4r6rU1oYbq2j8c8V2mZr1aXlN0l0Ws=",
            "DATABASE_URL": env.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/wt_payments",
            "REDIS_URL": env.get("REDIS_URL") or "redis://127.0.0.1:6379/1",
            "CACHE_KEY_PREFIX": "benchpay",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "LOG_LEVEL": "WARNING",
            "LOG_JSON": "false",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "STRIPE_SECRET_KEY": "sk_test_bench",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
            # The local stand-in for Stripe is not the real API: do not pace calls to it.
            "RATE_LIMITS_JSON": json.dumps({"stripe": {"requests": {"rate": 100000, "burst": 100000}}}),
        }
    )
    env.pop("CELERY_BROKER_URL", None)
    return env


def _ensure_database(url):
    import psycopg

    name = url.rsplit("/", 1)[-1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


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


def _wait_port(port, timeout=30):
    stop = time.monotonic() + timeout
    while time.monotonic() < stop:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _one_run(n_events, rng, port):
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

    url = f"http://127.0.0.1:{port}/webhooks/stripe/"
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
    n_events = int(os.environ.get("BENCH_PAYMENTS_EVENTS", "5000"))
    runs = int(os.environ.get("BENCH_PAYMENTS_RUNS", "1"))
    web_workers = int(os.environ.get("BENCH_PAYMENTS_WEB_WORKERS", "4"))
    concurrency = int(os.environ.get("BENCH_PAYMENTS_WORKER_CONCURRENCY", "4"))

    stripe_port, web_port = _free_port(), _free_port()
    fake = ThreadingHTTPServer(("127.0.0.1", stripe_port), _FakeStripe)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    env = _env(stripe_port)
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DJANGO_SETTINGS_MODULE",
                "SECRET_KEY",
                "FIELD_ENCRYPTION_KEYS",
                "DATABASE_URL",
                "REDIS_URL",
                "CACHE_KEY_PREFIX",
                "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRET",
            )
        }
    )
    try:
        _ensure_database(env["DATABASE_URL"])
    except Exception as exc:  # noqa: BLE001
        return f"Skipped: PostgreSQL at DATABASE_URL is not reachable ({exc})."
    import redis

    try:
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # this suite's own Redis db: broker, cache, limiter
    except redis.RedisError as exc:
        return f"Skipped: Redis at REDIS_URL is not reachable ({exc})."
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()

    procs = []
    logs = ROOT / "var" / "bench-payments"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "gunicorn"),
                    "config.wsgi",
                    "-b",
                    f"127.0.0.1:{web_port}",
                    "-w",
                    str(web_workers),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
                stdout=open(logs / "web.log", "w"),
                stderr=subprocess.STDOUT,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "config",
                    "worker",
                    "-Q",
                    "default,payments",
                    "--concurrency",
                    str(concurrency),
                    "--loglevel",
                    "WARNING",
                    "-n",
                    f"benchpay{web_port}@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=env,
                stdout=open(logs / "worker.log", "w"),
                stderr=subprocess.STDOUT,
            )
        )
        if not _wait_port(web_port):
            return "Failed: gunicorn did not start; see var/bench-payments/web.log."
        time.sleep(2)  # let the worker connect to the broker
        load_before = os.getloadavg()[0]
        rng = random.Random(7)
        results = [_one_run(n_events, rng, web_port) for _ in range(runs)]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        fake.shutdown()

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
        f"20 % duplicates and 10 % out of order. gunicorn {web_workers} sync workers, one Celery worker "
        f"(prefork, concurrency {concurrency}), PostgreSQL and Redis on 127.0.0.1; 16 client threads. Each invoice gets "
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
