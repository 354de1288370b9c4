"""One adapter per provider (gmail, graph), the same functions and return types (messaging.mail.types).

`for_connection(conn)` picks it. Each adapter runs every request inside one
integrations.gateway attempt with the provider's own quota units.
"""

from integrations.errors import PermanentError


class NotFound(PermanentError):
    """The provider has no such message, thread, draft, label or history: 404 to our client."""

    api_status = 404
    api_code = "not_found"

    def detail_sentence(self):
        return f"{self.provider} has no such item ({self.message})."


def for_connection(conn):
    if conn.provider == "google_oauth":
        from . import gmail

        return gmail
    if conn.provider == "microsoft_oauth":
        from . import graph

        return graph
    raise LookupError(f"no mail adapter for {conn.provider}")
