"""The request id of the work in hand, carried from HTTP into logs and Celery tasks."""

import contextvars
import re
import uuid

_request_id = contextvars.ContextVar("request_id", default=None)
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id():
    return uuid.uuid4().hex


def clean_request_id(value):
    """Accept a caller's X-Request-ID only if it is short and plain; else make one."""
    if value and _VALID.match(value):
        return value
    return new_request_id()


def get_request_id():
    return _request_id.get()


def set_request_id(value):
    return _request_id.set(value)


def reset_request_id(token):
    _request_id.reset(token)
