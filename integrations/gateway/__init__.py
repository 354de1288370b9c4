"""The one path for every outbound provider call.

    with gateway.attempt("stripe", "payment_intent.create", owner=user, idempotency_key=key) as call:
        intent = client.payment_intents.create(...)   # the adapter's SDK call
        call.record(http_status=200, request_id=intent.last_response.request_id, units={"requests": 1})

or, for a one-liner, `gateway.call(provider, operation, fn, meter=...)`.

Each attempt: the provider must be configured (else ProviderNotConfigured);
the outbound limiter must give a token (else RateLimited, nothing sent); the
circuit must allow it (else CircuitOpen, recorded); then the block runs, timed,
and exactly one ProviderCall row is written with its outcome, units, cost and
a redacted error. Errors leave as the hub's own types (integrations.errors):
adapters translate vendor exceptions; network errors and timeouts the adapter
did not translate are classified here. Anything else is re-raised untouched
after being recorded, and is treated as permanent.

The gateway never retries or sleeps: Celery tasks built on
`integrations.tasks.ProviderTask` are the one retry loop, and web requests
get a 502/503 with Retry-After instead.

Call providers outside `transaction.atomic()` blocks: a rollback would take the
call's log row with it, though the provider was called.

runtime.py       task_context, current_task_context, in_task, timeout_for
calllog.py       Attempt, classify, price_estimate and the ProviderCall write
outcome.py       Failure: what a failed attempt means (shared by both paths)
sync.py          attempt, call
handoff.py       a Celery worker's call-log rows: through Redis, written in batches
asynchronous.py  aattempt, atake_token, send_token_ahead
"""

from .asynchronous import aattempt, atake_token, send_token_ahead
from .calllog import Attempt, classify, price_estimate
from .outcome import Failure
from .runtime import TaskContext, current_task_context, in_task, task_context, timeout_for
from .sync import attempt, call

__all__ = [
    "TaskContext",
    "current_task_context",
    "in_task",
    "task_context",
    "timeout_for",
    "Attempt",
    "classify",
    "price_estimate",
    "Failure",
    "attempt",
    "call",
    "aattempt",
    "atake_token",
    "send_token_ahead",
]
