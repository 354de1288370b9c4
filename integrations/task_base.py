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
- Running past the soft time limit is a retryable timeout, like an SDK's own.
- A task registered in the outbox (integrations.outbox) leases its row while
  it runs, moves the row's next_attempt_at to its retry, and takes the row out
  of the outbox when it ends: a message lost anywhere on the way is re-sent by
  the sweeper, never waited for.
- An outbox task, or a follow-up task no outbox row keeps, may have a batch
  form (`batch_sends`): the messages of it that a sends_batched() block holds
  go as one message of the batch task, whose run (`run_each`) does for each
  row what the task would do alone, one row's failure apart from the others'.
"""

import contextvars
import functools
import logging
import random
from contextlib import contextmanager, nullcontext

from celery import Task, uuid
from celery.exceptions import Retry, SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from . import outbox
from .alerts import alert_raise
from .errors import ProviderError, ProviderTimeout, RateLimited
from .gateway import current_task_context, task_context
from .models import Alert

logger = logging.getLogger(__name__)

# Message header naming the (provider, scope) tokens a deferred run booked.
PREPAID_HEADER = "hub_prepaid"

# The message priority of bookkeeping that may wait while a burst of work is taken in (a payment's fee look-up):
# `@shared_task(..., priority=BACKGROUND_PRIORITY)`. On the Redis broker a worker asks for every queue's
# messages of priority 0 (every task without one: webhook drains, sends, notices) before any of priority 9,
# whatever the queue (kombu's BRPOP lists the queues' keys by priority first), so a burst of webhook
# events is applied before the follow-ups it queued, not behind them (issue 11); such a message still runs
# as soon as nothing of higher priority is waiting. Lower is sooner on Redis, the hub's broker (RabbitMQ
# would read it the other way, and only on queues declared with x-max-priority); the filesystem broker of
# `make run` ignores it.
BACKGROUND_PRIORITY = 9


def redis_queue_lists(queue):
    """The Redis lists kombu keeps a queue's messages in: the queue's own name (priority 0) and one per other
    priority step (BACKGROUND_PRIORITY's among them). Whatever reads or empties a queue on the broker reads all."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    return [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]


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

    def _outbox_row(self, args):
        """(kind, pk) when this task is the outbox's work for a row, else None."""
        kind = outbox.kind_for(self)
        return (kind, args[0]) if kind is not None and args else None

    def __call__(self, *args, **kwargs):
        row = self._outbox_row(args)
        if row is not None:
            outbox.lease(*row)
        prepaid = self._prepaid()
        # A worker renews the lease while the run lives; an eager run (tests, inline) needs no thread.
        keeper = outbox.LeaseKeeper(*row) if row is not None and not self.request.is_eager else nullcontext()
        with task_context(attempt=self.request.retries + 1, prepaid=prepaid) as ctx:
            try:
                with keeper:
                    result = self.run(*args, **kwargs)
            except RateLimited as exc:
                booked = [list(p) for p in ctx.reserved]
                if row is not None:
                    outbox.due_in(*row, exc.retry_after or 0)
                try:
                    self._defer(args, kwargs, countdown=exc.retry_after, prepaid=booked)
                except BrokerError:
                    if row is None:
                        raise
                    # Nothing reached the provider and the row is due when its token is (due_in above): the
                    # sweeper sends it, as after a refused retry. Not a failure: no give_up, no alert.
                    logger.exception(
                        "the broker refused the deferral of %s%s; the outbox sweeper sends it", self.name, tuple(args)
                    )
                return None
            except Retry as exc:
                # The task's own retry (a Twilio create call still in flight, a price not billed yet).
                if row is not None:
                    outbox.due_in(*row, _retry_seconds(exc))
                raise
            except (ProviderError, SoftTimeLimitExceeded) as exc:
                if isinstance(exc, SoftTimeLimitExceeded):
                    exc = ProviderTimeout(self.provider or "", f"{self.name} ran past its soft time limit")
                policy = retry_policy(self.provider or exc.provider)
                if not exc.retryable or self.request.retries >= policy["max_retries"]:
                    raise exc
                countdown = backoff_seconds(
                    self.request.retries, base=policy["base"], cap=policy["cap"], retry_after=exc.retry_after
                )
                if row is not None:
                    outbox.due_in(*row, countdown)
                raise self.retry(
                    args=args, kwargs=kwargs, exc=exc, countdown=countdown, max_retries=policy["max_retries"]
                )
        if row is not None:
            outbox.finished(*row)
        return result

    def run_each(self, single, ids, *, prepare=None, whole_args=False):
        """Run the outbox task `single` for each of `ids` in this one run, as `single(id)` would run alone.

        With `whole_args`, each of `ids` is the list of one message's arguments (`single(*item)`: a task
        of several arguments, batch_sends(..., whole_args=True)).

        The rows are leased together first (and kept while the run lives).
        `prepare(ids)` may read what every row needs in one go and return the
        function to run for each id instead of `single.run`. Each row ends on
        its own: finished, or, when it fails, handed on as `single`'s own run
        would go on after that failure (a retry of its own with backoff, or
        giving up with its alert and hook), while the rows after it still run.
        No rate token: this row and the rest are sent again as one message for
        when the token is due. Past the soft time limit the rest are sent again
        at once. `single`'s body must not call self.retry (it is not its run).

        The rows that finished leave the outbox together when the run ends (one
        UPDATE, not one per row). A worker that dies first leaves them leased:
        they are sent again once the lease runs out and, being done, skip. A
        task no outbox row keeps has no row to say it is done: each item that
        finished is marked in the cache under this message's id instead, and
        the redelivery of a message whose worker died mid-batch skips those
        (a notice mailed once, not again with the rest of its batch).
        """
        kind = outbox.kind_for(single)
        ids = list(ids)
        if kind is not None:
            outbox.lease_many(kind, ids)
        keeper = outbox.BatchLeaseKeeper(kind, ids) if kind is not None else None
        done_before = _DoneMarks(self.request.id, ids) if kind is None else None
        run_one = (
            prepare(ids) if prepare is not None else (lambda item: single.run(*item)) if whole_args else single.run
        )
        results, finished = [], []
        try:
            with keeper if keeper is not None and not self.request.is_eager else nullcontext():
                for i, pk in enumerate(ids):
                    if done_before is not None and done_before.has(i):
                        results.append(None)
                        continue
                    try:
                        results.append(run_one(pk))
                    except RateLimited as exc:
                        for rest in ids[i:]:
                            _row_left(keeper, kind, rest, exc.retry_after or 0)
                        ctx = current_task_context()
                        booked = [list(p) for p in ctx.reserved] if ctx is not None else []
                        # A message of other items: not under this one's id, whose done marks are by position.
                        self._defer((ids[i:],), {}, countdown=exc.retry_after, prepaid=booked, task_id=uuid())
                        return results
                    except SoftTimeLimitExceeded:
                        timeout = ProviderTimeout(single.provider or "", f"{self.name} ran past its soft time limit")
                        self._hand_over(single, kind, keeper, pk, timeout, whole_args=whole_args)
                        if ids[i + 1 :]:
                            self._send_rest(kind, ids[i + 1 :])
                        return results
                    except Exception as exc:  # noqa: BLE001 - this row goes on alone; the others still run
                        self._hand_over(single, kind, keeper, pk, exc, whole_args=whole_args)
                        results.append(None)
                        if done_before is not None:  # its retry (or its give-up) has it now, not a redelivery
                            done_before.mark(i)
                    else:
                        if kind is not None:
                            keeper.done(pk)
                            finished.append(pk)
                        else:
                            done_before.mark(i)
        finally:
            if kind is not None:
                outbox.finished_many(kind, finished)
        return results

    def _hand_over(self, single, kind, keeper, pk, exc, *, whole_args=False):
        """A row of run_each failed: what `single`'s own first run would do after that failure."""
        args = tuple(pk) if whole_args else (pk,)
        policy = retry_policy(single.provider or getattr(exc, "provider", None))
        if isinstance(exc, ProviderError) and exc.retryable and policy["max_retries"] > 0:
            countdown = backoff_seconds(0, base=policy["base"], cap=policy["cap"], retry_after=exc.retry_after)
            _row_left(keeper, kind, pk, countdown)
            try:
                single.apply_async(args, countdown=countdown, retries=1)  # its second attempt
            except BrokerError:
                logger.exception("the broker refused the retry of %s(%s); the outbox sweeper sends it", single.name, pk)
                if kind is not None:
                    outbox.mark_send_failed(kind, pk)
            return
        if keeper is not None:
            keeper.done(pk)
        logger.error("%s%s failed in %s: %r", single.name, args, self.name, exc, exc_info=exc)
        single.on_failure(exc, None, args, {}, None)

    def _send_rest(self, kind, ids):
        try:
            self.apply_async((ids,))
        except BrokerError:
            logger.exception("the broker refused %s for %d row(s); the outbox sweeper sends them", self.name, len(ids))
            if kind is not None:
                for pk in ids:
                    outbox.mark_send_failed(kind, pk)

    def _defer(self, args, kwargs, *, countdown, prepaid, task_id=None):
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
            task_id=task_id or self.request.id,
            retries=self.request.retries,  # a deferral is not an attempt
        )

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        row = self._outbox_row(args)
        if row is not None:
            try:
                outbox.gave_up(*row)
            except Exception:  # noqa: BLE001 - the lease runs out and the sweeper sends it again: harmless
                logger.exception("could not take %s %s out of the outbox", row[0].label, row[1])
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


class _DoneMarks:
    """The items of one batch message (by position) that a run of it finished: cache keys under the message's id.

    Read once when the run starts, one key written per finished item; kept a day, longer than any redelivery.
    A cache that lost them makes a redelivery run those items again, as a lone task's redelivery would.
    """

    TTL = 24 * 3600

    def __init__(self, message_id, items):
        self.prefix = f"batch-done:{message_id}:" if message_id else None
        self.done = set()
        if self.prefix is not None:
            found = cache.get_many([self.prefix + str(i) for i in range(len(items))])
            self.done = {int(key[len(self.prefix) :]) for key in found}

    def has(self, i):
        return i in self.done

    def mark(self, i):
        if self.prefix is not None:
            cache.set(self.prefix + str(i), 1, self.TTL)


def _row_left(keeper, kind, pk, seconds):
    """A row of run_each goes on in another message, due in `seconds`."""
    if kind is not None:
        keeper.done(pk)
        outbox.due_in(kind, pk, seconds)


def _retry_seconds(exc):
    when = exc.when
    if when is None:
        return 0.0
    if hasattr(when, "timestamp"):
        return max(0.0, (when - timezone.now()).total_seconds())
    return float(when)


# The messages a sends_batched() block holds back until it ends (None outside one).
_held = contextvars.ContextVar("held_task_sends", default=None)


class _Held(list):
    """The messages a sends_batched() block holds, and the receipts of those that carry one."""

    def __init__(self):
        super().__init__()
        self.receipts = []


@contextmanager
def sends_batched():
    """Hold the tasks enqueue_on_commit sends inside the block and publish them together when it ends.

    One pipelined write to the broker for all of them instead of one round
    trip (and, with Redis, one client object) per message: a drained batch of
    webhook events queues a task for most of its events (issue 11). They are
    still sent only after their commit, and sent even if the block raises
    after it. Eager runs (tests, inline) send at once, as everywhere else.
    """
    held = _Held()
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        if held and _send_held(held):
            _published(held.receipts)


# Task name -> the task that runs it for several ids in one message (batch_sends).
_batch_forms = {}
BATCH_SEND_MAX = 25  # ids per batch message: a batch's calls stay well inside one task's time limit


def batch_sends(single, batch, *, whole_args=False):
    """Held messages of the outbox task `single(id)` go as `batch([id, ...])` messages (up to BATCH_SEND_MAX ids).

    `whole_args`: `single` takes several arguments (a follow-up no outbox row keeps, such as a payment's failure
    notice with its reason); each item of `batch`'s list is then one message's argument list.

    `batch` runs them with ProviderTask.run_each(single, ids). For the tasks a
    drained webhook batch queues (a fee look-up per success): one message, one
    worker hand-over and one read of the rows instead of one per event (issue
    11). A lone message, and every message sent outside sends_batched(), goes
    as `single` still; the sweeper always sends `single`.
    """
    _batch_forms[single.name] = (batch, whole_args)


def _merged(held):
    """(task, args, kwargs) to publish for the held messages: those with a batch form merged by task."""
    out, ids = [], {}
    for task, args, kwargs, _kind in held:
        batch, whole_args = _batch_forms.get(task.name, (None, False))
        if batch is not None and not kwargs and (whole_args or len(args) == 1):
            ids.setdefault(task.name, (task, []))[1].append(list(args) if whole_args else args[0])
        else:
            out.append((task, args, kwargs))
    for task, group in ids.values():
        batch, whole_args = _batch_forms[task.name]
        if len(group) == 1:
            out.append((task, tuple(group[0]) if whole_args else (group[0],), {}))
            continue
        for start in range(0, len(group), BATCH_SEND_MAX):
            out.append((batch, (group[start : start + BATCH_SEND_MAX],), {}))
    return out


def _send_held(held):
    """Publish the held messages in one pipelined write; True if the broker took them all."""
    try:
        with held[0][0].app.producer_or_acquire() as producer, producer.batch():
            for task, args, kwargs in _merged(held):
                task.apply_async(args=args, kwargs=kwargs, producer=producer)
    except BrokerError:  # a refused connection, or a pipeline that failed midway (kombu wraps redis' errors)
        # The rows are committed. Some may have reached the broker before the write failed, so none is sent
        # again from here: the outbox's rows are due now for its sweeper, and the follow-ups a webhook
        # handler queued stay on their event for the inbox's (both send tasks that are safe to repeat).
        logger.exception(
            "the broker refused %d task message(s); the sweepers send those an outbox row or an event keeps",
            len(held),
        )
        for _task, args, _kwargs, kind in held:
            if kind is not None and args:
                outbox.mark_send_failed(kind, args[0])
        return False
    return True


class Receipt:
    """Rides with one enqueue_on_commit message that no outbox row keeps; tells `listener` once the broker took it.

    The webhook drain gives the messages its handlers queued a listener (processing.FollowUps), so a
    follow-up leaves its event's record only once it is really on its way, never on the commit alone.
    """

    __slots__ = ("listener", "key")

    def __init__(self):
        self.listener = None
        self.key = None


def _published(receipts):
    """Tell each listener, once, which of its receipts' messages the broker has taken."""
    by_listener = {}
    for receipt in receipts:
        if receipt is not None and receipt.listener is not None:
            by_listener.setdefault(id(receipt.listener), (receipt.listener, []))[1].append(receipt.key)
    for listener, keys in by_listener.values():
        try:
            listener.published(keys)
        except Exception:  # noqa: BLE001 - the messages went out; the worst left is a harmless second send
            logger.exception("could not record that %d follow-up message(s) were sent", len(keys))


def _send(task, args, kwargs, kind, receipt=None):
    held = _held.get()
    if held is not None and not task.app.conf.task_always_eager:
        held.append((task, args, kwargs, kind))
        held.receipts.append(receipt)
        return
    try:
        task.apply_async(args=args, kwargs=kwargs)
    except BrokerError:
        if task.app.conf.task_always_eager:
            raise
        # The row is committed: the caller answers 202 with it, and the sweeper sends the task.
        logger.exception(
            "the broker refused %s%s; %s",
            task.name,
            tuple(args),
            "the outbox sweeper sends it"
            if kind is not None
            else "a webhook event keeps it if a handler queued it, else nothing re-sends it",
        )
        if kind is not None and args:
            outbox.mark_send_failed(kind, args[0])
        return
    _published([receipt])


def unkept_sends(callbacks):
    """The enqueue_on_commit messages among on_commit `callbacks` that no outbox row keeps:
    [(task, args, kwargs, Receipt)], for a caller that keeps them itself (the webhook drain)."""
    found = []
    for _sids, callback, _robust in callbacks:
        if isinstance(callback, functools.partial) and callback.func is _send and len(callback.args) == 5:
            task, args, kwargs, _kind, receipt = callback.args
            if receipt is not None:
                found.append((task, args, kwargs, receipt))
    return found


def enqueue_on_commit(task, *args, **kwargs):
    """Queue `task(*args, **kwargs)` (ids only) once the current transaction commits: the one way to enqueue work.

    Outside a transaction it is sent at once. Sending after commit means a
    worker never looks for a row that is not there yet. A task registered in
    the outbox also sets its row's next_attempt_at in this transaction, so a
    message the broker refuses or loses is sent again by the sweeper.
    """
    kind = outbox.kind_for(task)
    if kind is not None and args:
        outbox.mark_enqueued(kind, args[0])
    # No outbox row keeps this message: a receipt lets whoever does (the webhook drain) hear it went out.
    receipt = Receipt() if kind is None else None
    transaction.on_commit(functools.partial(_send, task, args, kwargs, kind, receipt))


def enqueue_marked_on_commit(task, pk):
    """enqueue_on_commit(task, pk) for an outbox task whose row this transaction already marked: its own UPDATE
    of the row carried outbox.enqueued_fields() (a drained payment's success, issue 11). Only the message."""
    kind = outbox.kind_for(task)
    if kind is None:
        raise TypeError(f"{task.name} is not an outbox task: use enqueue_on_commit")
    transaction.on_commit(functools.partial(_send, task, (pk,), {}, kind, None))
