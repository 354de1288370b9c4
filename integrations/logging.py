import logging

from .context import get_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        if not getattr(record, "request_id", None):
            record.request_id = get_request_id() or "-"
        return True
