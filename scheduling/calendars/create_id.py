"""The id a calendar create under the client's Idempotency-Key hands the provider, so a retry is not a second event.

Google takes it as the event's own id (events.insert `id`: 409 duplicate when it is taken), Microsoft Graph as
the event's `transactionId` (a repeated POST answers the event already made). One derivation serves both, and
Meet and Teams meetings' events too (providers.google_meet / providers.teams meeting_create). Zoom and Webex
meetings carry it where those APIs keep a caller's own value (a Zoom custom key, a Webex integration tag), by
which a retry finds what a lost attempt made (services.meetings).
"""

import base64
import contextlib
import hashlib
import json

from integrations.errors import DomainError, PermanentError


def create_id(conn, calendar_id, idempotency_key, body, *, owner=None):
    """base32hex (lowercase a-v, 0-9) of SHA-256 over user, calendar, key and event body: 52 characters.

    The same for every attempt of one create (same user, calendar, key and event), so a create the provider
    applied but whose answer was lost is found again when the client retries, instead of becoming a second event
    with a second set of invitations. Another event under a reused key (a 5xx keeps no idempotency record) gets
    another id: it is another create, never answered with the first one's event. base32hex because Google allows
    nothing else in an event id; Graph documents no alphabet or length for transactionId. A create made on no
    connection of the user's (Zoom: the hub's own account) names its `owner` instead.
    """
    owner_id = conn.owner_id if conn is not None else owner.pk
    seed = json.dumps([owner_id, calendar_id, idempotency_key, body], sort_keys=True, default=str)
    return base64.b32hexencode(hashlib.sha256(seed.encode()).digest()).decode().rstrip("=").lower()


@contextlib.contextmanager
def graph_transaction_refused(idempotency_key, *, noun="event", error="event_conflict"):
    """Around a Graph event create that carries a transactionId: Graph refuses an id that "has already been used
    to create a different event" (ErrorDuplicateTransactionId). The id covers the whole create, so the hub never
    sends it with another one; should Graph still say so, the client gets a conflict asking for a new key, not a
    provider failure. Calendar events (calendars.graph.events) and Teams meetings (providers.teams) share it."""
    try:
        yield
    except PermanentError as exc:
        if not (idempotency_key and exc.code == "ErrorDuplicateTransactionId"):
            raise
        raise DomainError(
            409,
            error,
            f"Microsoft says an earlier create under this Idempotency-Key made a different {noun}; to make this "
            f"{noun}, send the create with a new Idempotency-Key.",
        ) from exc
