"""The request id of the work in hand, carried from HTTP into logs and Celery tasks,
and the work a request leaves for after its answer has gone out (`after_response`)."""

import contextvars
import logging
import re
import uuid

logger = logging.getLogger(__name__)

_request_id = contextvars.ContextVar("request_id", default=None)
_after_response = contextvars.ContextVar("after_response", default=None)
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


# --- work left for after the answer ----------------------------------------------------
#
# Bookkeeping the client does not need to wait for (a provider call's log row
# on the search path) runs once the response has been sent. RequestIdMiddleware
# opens a scope for each request and hands its `run` to the response as a
# resource closer: the server closes the response after its last byte went out
# (WSGI and ASGI alike; the test client closes it before returning), and Django
# runs the closers then. Work added outside any request, or after the scope has
# run, runs at once: nothing is left waiting on a close that never comes.


class ResponseScope:
    def __init__(self):
        self.pending = []
        self.open = True

    def run(self):
        if not self.open:
            return
        self.open = False  # anything added from now on runs at once
        # Django runs the closers before sending request_finished, whose handler then
        # returns this work's database connection as it would the view's (pool, CONN_MAX_AGE).
        for fn in self.pending:
            try:
                fn()
            except Exception:  # noqa: BLE001 - the answer is sent; a failure here must not hide the rest
                logger.exception("after-response work failed")
        self.pending = []


def nothing_left_after(response, request=None):
    """True when closing `response` runs no work the client should not wait for: its only closers are
    response scopes with nothing pending, or `request`'s own close (its uploaded files), so a server may
    close it before sending, in the same hop."""
    return all(
        (isinstance(getattr(closer, "__self__", None), ResponseScope) and not closer.__self__.pending)
        or (request is not None and closer == request.close)
        for closer in response._resource_closers
    )


def open_response_scope():
    """A new scope for the request in hand (RequestIdMiddleware); returns (scope, token to reset)."""
    scope = ResponseScope()
    return scope, _after_response.set(scope)


def reset_response_scope(token):
    _after_response.reset(token)


def answering():
    """True inside a request whose response has not been sent yet (after_response would wait)."""
    scope = _after_response.get()
    return scope is not None and scope.open


def after_response(fn, *, first=False):
    """Run `fn()` once the current response has been sent; at once outside a request.

    `first`: before the work already left (a lock other requests wait on goes before a log row)."""
    scope = _after_response.get()
    if scope is None or not scope.open:
        fn()
    elif first:
        scope.pending.insert(0, fn)
    else:
        scope.pending.append(fn)
