"""Signal handlers: request-id propagation and the worker heartbeat (Celery); cache invalidation (models)."""

import time

from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from django.db.models.signals import post_delete, post_save

from .context import get_request_id, new_request_id, reset_request_id, set_request_id

_tokens = {}


@before_task_publish.connect
def add_request_id_header(headers=None, **kwargs):
    if headers is not None and not headers.get("request_id"):
        headers["request_id"] = get_request_id() or new_request_id()
    if headers is not None:
        # When it entered the queue (each retry is a new entry): the queue-age threshold reads it.
        headers["hub_enqueued_at"] = time.time()


@task_prerun.connect
def bind_request_id(task_id=None, task=None, **kwargs):
    request_id = getattr(task.request, "request_id", None) or new_request_id()
    _tokens[task_id] = set_request_id(request_id)


@task_postrun.connect
def unbind_request_id(task_id=None, **kwargs):
    token = _tokens.pop(task_id, None)
    if token is not None:
        reset_request_id(token)


@worker_ready.connect
def stamp_heartbeat_on_start(sender=None, **kwargs):
    from .services import heartbeat_stamp

    heartbeat_stamp(hostname=sender.hostname)


@worker_init.connect
def call_log_handoff_on(**kwargs):
    """A worker's successful provider calls hand their rows off through Redis (gateway.handoff)."""
    from .gateway import handoff

    handoff.enable()


@worker_process_shutdown.connect
@worker_shutdown.connect
def call_log_handoff_stop(**kwargs):
    """A prefork child's exit, or a solo/threads worker's shutdown: its drainer writes what is left."""
    from .gateway import handoff

    handoff.stop()


def _connect_budget_signals():
    from .models import Budget
    from .usage import budgets_forget

    post_save.connect(budgets_forget, sender=Budget, dispatch_uid="budgets_forget_save")
    post_delete.connect(budgets_forget, sender=Budget, dispatch_uid="budgets_forget_delete")


_connect_budget_signals()


def _connect_token_signals():
    from django.contrib.auth import get_user_model

    from .auth.tokens import tokens_forget
    from .models import ApiToken

    for model in (ApiToken, get_user_model()):
        post_save.connect(tokens_forget, sender=model, dispatch_uid=f"tokens_forget_save_{model.__name__}")
        post_delete.connect(tokens_forget, sender=model, dispatch_uid=f"tokens_forget_delete_{model.__name__}")


_connect_token_signals()
