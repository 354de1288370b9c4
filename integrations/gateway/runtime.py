"""Where a call runs: the task context ProviderTask sets (attempt number, rate tokens booked by a
deferral) and the timeout that follows from it (short in a web request, longer in a worker).
"""

import contextlib
import contextvars

from django.conf import settings

# Set by ProviderTask while a task runs: attempt number, and the (provider,
# scope) rate tokens booked by an earlier deferral of this task.
_task_context = contextvars.ContextVar("gateway_task_context", default=None)


class TaskContext:
    def __init__(self, attempt=1, prepaid=()):
        self.attempt = attempt
        self.prepaid = set(prepaid)
        self.reserved = set()


@contextlib.contextmanager
def task_context(attempt=1, prepaid=()):
    ctx = TaskContext(attempt, prepaid)
    token = _task_context.set(ctx)
    try:
        yield ctx
    finally:
        _task_context.reset(token)


def in_task():
    return _task_context.get() is not None


def current_task_context():
    """The TaskContext of the task running now, or None."""
    return _task_context.get()


def timeout_for(provider):
    """Seconds for an SDK timeout: short inside a web request, longer in a worker."""
    conf = settings.PROVIDER_TIMEOUTS.get(provider, settings.PROVIDER_TIMEOUTS["default"])
    return conf["task"] if in_task() else conf["web"]
