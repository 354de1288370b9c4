"""Travel services: search (cached, single-flight), places, price watches."""

from .places import places_suggest
from .search import flight_search, flight_search_page
from .watches import (
    watch_cancel,
    watch_check,
    watch_check_due,
    watch_check_failed,
    watch_create,
    watch_get,
    watch_history,
    watch_notify,
    watch_notify_failed,
    watch_set_status,
)

__all__ = [
    "flight_search",
    "flight_search_page",
    "places_suggest",
    "watch_cancel",
    "watch_check",
    "watch_check_due",
    "watch_check_failed",
    "watch_create",
    "watch_get",
    "watch_history",
    "watch_notify",
    "watch_notify_failed",
    "watch_set_status",
]
