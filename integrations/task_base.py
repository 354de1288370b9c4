"""The base for every Celery task that calls a provider.

    @shared_task(bind=True, base=ProviderTask, provider="twilio", give_up=sms_mark_failed_task_hook)
    def sms_send(self, sms_id): services.sms_send(sms_id=sms_id)

- acks_late + reject_on_worker_lost: a worker that dies mid-task leaves the
  message to be redelivered; the domain row's state machine (queued -> sending
  -> sent) makes the redelivery harmless.
- Retryable errors (integrations.errors.RetryableError) are retried with
  exponential backoff and full jitter, capped per provider, never sooner than
  the provider's Retry-After. Permanent errors are not retried.
- No token from the outbound limiter is not a failure: the task books its
  token and is re-sent for the moment the token is due (countdown), without
  using up a retry and without a worker sleeping.
- The final failure calls the task's `give_up(task, exc, *args, **kwargs)`
  (to store it on the domain row) and raises a `task_failed` Alert.
"""

import functools
import logging
import random

from celery import Task
from django.conf import settings
from django.db import transaction

from .alerts import alert_raise
from .errors import ProviderError, RateLimited
from .gateway import task_context
from .models import Alert

logger = logging.getLogger(__name__)

# Message header naming the (provider, scope) tokens a deferred run booked.
PREPAID_HEADER = "hub_prepaid"


def retry_policy(provider):
    conf = dict(settings.PROVIDER_RETRY["default"])
    conf.update(settings.PROVIDER_RETRY.get(provider or "", {}))
    return conf


def backoff_seconds(retries, *, base, cap, retry_after=None):
    """Full jitter: uniform(0, min(cap, base * 2**retries)); a Retry-After is a floor, never cut."""
    delay = random.uniform(0, min(cap, base * (2**retries)))
    if retry_after:
        delay = max(delay, retry_after)
    return delay


class ProviderTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    provider = None
    give_up = None

    def _prepaid(self):
        # A worker exposes custom message headers as request attributes; eager runs keep them in .headers.
        booked = getattr(self.request, PREPAID_HEADER, None) or (self.request.headers or {}).get(PREPAID_HEADER)
        return [tuple(p) for p in booked or ()]

    def __call__(self, *args, **kwargs):
        prepaid = self._prepaid()
        with task_context(attempt=self.request.retries + 1, prepaid=prepaid) as ctx:
            try:
                return self.run(*args, **kwargs)
            except RateLimited as exc:
                booked = [list(p) for p in ctx.reserved]
                self._defer(args, kwargs, countdown=exc.retry_after, prepaid=booked)
                return None
            except ProviderError as exc:
                policy = retry_policy(self.provider or exc.provider)
                if not exc.retryable or self.request.retries >= policy["max_retries"]:
                    raise
                countdown = backoff_seconds(
                    self.request.retries, base=policy["base"], cap=policy["cap"], retry_after=exc.retry_after
                )
                raise self.retry(
                    args=args, kwargs=kwargs, exc=exc, countdown=countdown, max_retries=policy["max_retries"]
                )

    def _defer(self, args, kwargs, *, countdown, prepaid):
        """Send the same task again for when its token is due; this run ends without error."""
        headers = {PREPAID_HEADER: prepaid}
        if self.request.is_eager:
            # Eager mode (tests) runs inline, so honour the booking but do not sleep.
            return self.apply(args=args, kwargs=kwargs, retries=self.request.retries, headers=headers)
        self.apply_async(
            args=args,
            kwargs=kwargs,
            headers=headers,
            countdown=max(0.0, countdown),
            task_id=self.request.id,
            retries=self.request.retries,  # a deferral is not an attempt
        )

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        provider = getattr(exc, "provider", None) or self.provider or ""
        alert_raise(
            kind=Alert.Kind.TASK_FAILED,
            provider=provider,
            message=f"{self.name}{tuple(args)} gave up after {self.request.retries + 1} attempt(s): {exc}"[:1000],
            dedupe_key=f"task_failed:{self.name}",
        )
        if self.give_up is not None:
            try:
                self.give_up(exc, *args, **kwargs)
            except Exception:  # noqa: BLE001 - the alert above is already raised; log and carry on
                logger.exception("give_up hook of %s failed", self.name)


def enqueue_on_commit(task, *args, **kwargs):
    """Queue `task(*args, **kwargs)` (ids only) once the current transaction commits: the one way to enqueue work.

    Outside a transaction it is sent at once. Sending after commit means a
    worker never looks for a row that is not there yet.
    """
    transaction.on_commit(functools.partial(task.apply_async, args=args, kwargs=kwargs))
