import logging

from .context import get_request_id


class RequestIdFilter(logging.Filter):
    """Stamp every record with the request id of the work in hand.

    Django's own request logger (4xx/5xx lines, `django.security`) writes after
    the middleware chain has returned, when the context variable is already
    reset; those records carry the request itself, which knows its id.
    """

    def filter(self, record):
        if not getattr(record, "request_id", None):
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or get_request_id() or "-"
        return True
