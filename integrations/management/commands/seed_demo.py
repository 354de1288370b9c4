"""`python manage.py seed_demo`: a realistic mix of demo data for a development database, so the console has something to show.

Calls across providers over the last 30 days (with failures, latencies and
costs, and their hourly roll-ups exactly as the gateway keeps them), webhook
events (processed and failed), alerts, budgets, invoices, SMS, documents and
AI requests, owned by a handful of demo users. It never talks to a provider.
It refuses to run when DEBUG is off: demo rows must never reach production.
"""

import datetime as dt
import hashlib
import random
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from integrations.admin_console import console_cache_reset
from integrations.alerts import alert_raise
from integrations.models import Alert, Budget, ProviderCall, WebhookEvent
from integrations.usage import rollup_record_call

# (provider, operation, share of calls, failure rate, latency median ms, price per call, units)
PROFILES = [
    ("stripe", "payment_intent.create", 0.16, 0.03, 320, "0", {"requests": 1}),
    ("stripe", "charge", 0.06, 0.0, 280, "1.72", {"amount_usd": 49}),
    ("twilio", "sms.send", 0.20, 0.06, 210, "0.0083", {"segments": 1}),
    ("twilio", "call.price", 0.03, 0.02, 190, "0.042", {"minutes": 3}),
    ("s3", "put", 0.15, 0.01, 90, "0.000005", {"requests": 1, "bytes_in": 250_000}),
    ("s3", "get", 0.10, 0.005, 45, "0.000035", {"requests": 1, "bytes_out": 380_000}),
    (
        "openai",
        "chat.completions",
        0.18,
        0.04,
        1400,
        "0.00061",
        {"input_tokens": 900, "output_tokens": 220, "cached_tokens": 400},
    ),
    (
        "anthropic",
        "messages",
        0.08,
        0.05,
        1800,
        "0.0042",
        {"input_tokens": 1100, "output_tokens": 300, "cached_tokens": 0},
    ),
    (
        "gemini",
        "generate_content",
        0.04,
        0.08,
        1100,
        "0.00018",
        {"input_tokens": 700, "output_tokens": 150, "cached_tokens": 0},
    ),
]
FAILURES = {
    "stripe": [
        ("error", 402, "card_declined", "Your card was declined."),
        ("timeout", None, "ProviderTimeout", "Read timed out."),
    ],
    "twilio": [
        ("error", 400, "21610", "Attempt to send to unsubscribed recipient"),
        ("error", 400, "21211", "The 'To' number +1555010 is not a valid phone number."),
        ("rate_limited", 429, "20429", "Too Many Requests"),
    ],
    "s3": [
        ("error", 503, "SlowDown", "Please reduce your request rate."),
        ("timeout", None, "ReadTimeoutError", "Read timed out."),
    ],
    "openai": [
        (
            "rate_limited",
            429,
            "rate_limit_exceeded",
            "Rate limit reached for gpt-4o-mini in organization on tokens per min.",
        ),
        ("error", 500, "server_error", "The server had an error while processing your request."),
    ],
    "anthropic": [
        ("error", 529, "overloaded_error", "Overloaded"),
        ("timeout", None, "APITimeoutError", "Request timed out."),
    ],
    "gemini": [("error", 503, "UNAVAILABLE", "The model is overloaded. Please try again later.")],
}
DEMO_PREFIX = "demo_"


class Command(BaseCommand):
    help = "Fill a development database with demo calls, webhooks, alerts, invoices, SMS, documents and AI requests."

    def add_arguments(self, parser):
        parser.add_argument("--calls", type=int, default=3000, help="How many provider calls (default 3000).")
        parser.add_argument("--days", type=int, default=30, help="Spread over this many days (default 30).")
        parser.add_argument("--seed", type=int, default=15, help="Random seed, for a repeatable mix.")

    def handle(self, *args, calls, days, seed, **options):
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo only runs with DEBUG on (a development database): set DJANGO_DEBUG=true. "
                "Demo rows must never reach a production database."
            )
        rng = random.Random(seed)
        now = timezone.now()
        owners = self._owners()
        if ProviderCall.objects.filter(provider_request_id__startswith="req_demo_").exists():
            raise CommandError("This database already has the demo data (calls req_demo_*); it is seeded once.")
        with transaction.atomic():
            made = self._calls(rng, owners, calls, days, now)
            webhooks = self._webhooks(rng, now)
            self._alerts_and_budgets(owners)
        console_cache_reset()  # the calls went into past hours the console may have cached already
        domain = [self._domain(name, fn, rng, owners, now) for name, fn in self._domain_seeders()]
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {made} provider calls over {days} days for {len(owners)} demo owners, {webhooks} webhook "
                f"events, alerts and budgets; {', '.join(d for d in domain if d)}. Open /admin/ to see them."
            )
        )

    def _owners(self):
        User = get_user_model()
        owners = []
        for name in ("alice", "bob", "carol", "dan", "erin", "frank"):
            user, _ = User.objects.get_or_create(
                username=f"{DEMO_PREFIX}{name}", defaults={"email": f"{name}@demo.example"}
            )
            owners.append(user)
        return owners

    def _calls(self, rng, owners, count, days, now):
        """Calls spread over `days`, with their roll-ups built as the gateway would have built them at the time."""
        weights = [p[2] for p in PROFILES]
        calls, times = [], []
        for i in range(count):
            provider, operation, _, fail_rate, median, price, units = rng.choices(PROFILES, weights)[0]
            # More traffic lately, and one bad evening for Twilio two days ago.
            at = now - dt.timedelta(seconds=rng.random() ** 1.3 * days * 86400)
            outcome, status, code, message = "ok", 200, "", ""
            rate = fail_rate * (6 if provider == "twilio" and (now - at).days == 2 and at.hour >= 18 else 1)
            if rng.random() < rate:
                outcome, status, code, message = rng.choice(FAILURES[provider])
            calls.append(
                ProviderCall(
                    provider=provider,
                    operation=operation,
                    owner=rng.choice(owners) if rng.random() < 0.9 else None,
                    outcome=outcome,
                    http_status=status,
                    latency_ms=round(rng.lognormvariate(0, 0.6) * median, 3),
                    provider_request_id=f"req_demo_{i:06d}",
                    units=units if outcome == "ok" else {},
                    cost_usd=Decimal(price) if outcome == "ok" else Decimal(0),
                    error_code=code,
                    error_message=message,
                    retryable=None if outcome == "ok" else outcome != "error" or (status or 0) >= 500,
                )
            )
            times.append(at)
        # created_at is auto_now_add: insert, then put each call back at its own time.
        ProviderCall.objects.bulk_create(calls, batch_size=500)
        for call, at in zip(calls, times, strict=True):
            call.created_at = at
        ProviderCall.objects.bulk_update(calls, ["created_at"], batch_size=500)
        for call in calls:
            rollup_record_call(call)
        return count

    def _webhooks(self, rng, now):
        made = 0
        kinds = [("stripe", "payment_intent.succeeded"), ("stripe", "invoice.paid"), ("twilio", "sms.status")]
        for i in range(60):
            provider, kind = rng.choice(kinds)
            event, created = WebhookEvent.objects.get_or_create(
                provider=provider,
                event_id=f"evt_demo_{i:04d}",
                defaults={
                    "type": kind,
                    "payload": {"id": f"evt_demo_{i:04d}", "type": kind, "data": {"object": {"demo": True}}},
                    "signature_verified": True,
                    "status": WebhookEvent.Status.PROCESSED,
                    "attempts": 1,
                    "processed_at": now - dt.timedelta(minutes=rng.randint(1, 40000)),
                },
            )
            made += created
        failed = [
            ("stripe", "charge.dispute.created", "KeyError: 'payment_intent'"),
            ("stripe", "charge.dispute.created", "KeyError: 'payment_intent'"),
            ("twilio", "sms.status", "SmsMessage matching query does not exist."),
        ]
        for n, (provider, kind, error) in enumerate(failed):
            event, created = WebhookEvent.objects.get_or_create(
                provider=provider,
                event_id=f"evt_demo_failed_{n}",
                defaults={
                    "type": kind,
                    "payload": {"id": f"evt_demo_failed_{n}", "type": kind},
                    "signature_verified": True,
                    "status": WebhookEvent.Status.FAILED,
                    "attempts": settings.WEBHOOK_MAX_ATTEMPTS,
                    "last_error": error,
                },
            )
            made += created
            alert_raise(
                kind=Alert.Kind.WEBHOOK_FAILED,
                provider=provider,
                severity=Alert.Severity.CRITICAL,
                message=f"Webhook {provider} {kind} {event.event_id} failed after {event.attempts} attempt(s): {error}. "
                "Fix the cause, then replay it in admin.",
                dedupe_key=f"webhook_failed:{provider}:{kind}",
            )
        return made

    def _alerts_and_budgets(self, owners):
        alert_raise(
            kind=Alert.Kind.QUOTA,
            provider="openai",
            severity=Alert.Severity.CRITICAL,
            message="openai refuses calls for quota or billing (insufficient_quota): You exceeded your current quota.",
        )
        alert_raise(
            kind=Alert.Kind.PROVIDER_FAILURE_RATE,
            provider="twilio",
            severity=Alert.Severity.CRITICAL,
            message="twilio: 31 of 52 calls failed this hour (60%).",
        )
        Budget.objects.get_or_create(provider="openai", owner=None, defaults={"monthly_limit_usd": Decimal("5.00")})
        Budget.objects.get_or_create(provider="twilio", owner=None, defaults={"monthly_limit_usd": Decimal("8.00")})
        Budget.objects.get_or_create(provider="stripe", owner=owners[0], defaults={"monthly_limit_usd": Decimal("50")})

    def _domain_seeders(self):
        return [
            ("invoices", self._invoices),
            ("SMS", self._sms),
            ("documents", self._documents),
            ("AI requests", self._ai),
        ]

    def _domain(self, name, fn, rng, owners, now):
        """Each app's demo rows; an app whose models have moved on is reported, not fatal."""
        try:
            with transaction.atomic():
                return f"{fn(rng, owners, now)} {name}"
        except Exception as exc:  # noqa: BLE001 - demo data for one app must not stop the others
            self.stderr.write(f"Skipped {name}: {type(exc).__name__}: {exc}")
            return ""

    def _invoices(self, rng, owners, now):
        from payments.models import Invoice

        made = 0
        for i in range(12):
            status = rng.choice(["open", "paid", "paid", "failed", "void"])
            _, created = Invoice.objects.get_or_create(
                number=f"DEMO-{i:04d}",
                defaults={
                    "owner": rng.choice(owners),
                    "description": "Assistant subscription",
                    "amount": rng.choice([4900, 9900, 1500, 25000]),
                    "currency": "usd",
                    "status": status,
                    "paid_at": now - dt.timedelta(days=rng.randint(0, 25)) if status == "paid" else None,
                },
            )
            made += created
        return made

    def _sms(self, rng, owners, now):
        from messaging.models import SmsMessage

        made = 0
        for i in range(20):
            failed = i % 7 == 3
            _, created = SmsMessage.objects.get_or_create(
                external_id=f"SMdemo{i:028d}",
                defaults={
                    "owner": rng.choice(owners),
                    "to_number": f"+1555010{i:04d}",
                    "body": "Your meeting with the dentist is tomorrow at 10:00.",
                    "status": "failed" if failed else "delivered",
                    "segments": 1,
                    "price_usd": Decimal("0.0083"),
                    "error_code": "21610" if failed else "",
                    "error_message": "Attempt to send to unsubscribed recipient" if failed else "",
                },
            )
            made += created
        return made

    def _documents(self, rng, owners, now):
        from documents.models import Document, DocumentVersion

        made = 0
        for i in range(8):
            key = f"demo/{i:04d}-contract.pdf"
            if DocumentVersion.objects.filter(storage_key=key).exists():
                continue
            document = Document.objects.create(owner=rng.choice(owners))
            version = DocumentVersion.objects.create(
                document=document,
                number=1,
                filename=f"contract-{i}.pdf",
                content_type="application/pdf",
                size=rng.randint(40_000, 900_000),
                sha256=hashlib.sha256(key.encode()).hexdigest(),
                backend="local",
                storage_key=key,
                scan_status="clean",
            )
            document.current_version = version
            document.save(update_fields=["current_version"])
            made += 1
        return made

    def _ai(self, rng, owners, now):
        from ai.models import AiRequest

        rows = [
            AiRequest(
                owner=rng.choice(owners),
                provider=provider,
                model=model,
                requested_model=model,
                outcome="ok",
                input_tokens=rng.randint(200, 2000),
                output_tokens=rng.randint(50, 600),
                cost_usd=Decimal(rng.randint(10, 900)) / 100000,
                latency_ms=rng.uniform(400, 3000),
            )
            for provider, model in [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku")] * 10
        ]
        AiRequest.objects.bulk_create(rows)
        return len(rows)
