"""The id a calendar create under the client's Idempotency-Key hands the provider, so a retry is not a second event.

Google takes it as the event's own id (events.insert `id`: 409 duplicate when it is taken), Microsoft Graph as
the event's `transactionId` (a repeated POST answers the event already made). One derivation serves both, and
Meet meetings' events too (providers.google_meet.meeting_create).
"""

import base64
import hashlib
import json


def create_id(conn, calendar_id, idempotency_key, body):
    """base32hex (lowercase a-v, 0-9) of SHA-256 over user, calendar, key and event body: 52 characters.

    The same for every attempt of one create (same user, calendar, key and event), so a create the provider
    applied but whose answer was lost is found again when the client retries, instead of becoming a second event
    with a second set of invitations. Another event under a reused key (a 5xx keeps no idempotency record) gets
    another id: it is another create, never answered with the first one's event. base32hex because Google allows
    nothing else in an event id; Graph documents no alphabet or length for transactionId.
    """
    seed = json.dumps([conn.owner_id, calendar_id, idempotency_key, body], sort_keys=True, default=str)
    return base64.b32hexencode(hashlib.sha256(seed.encode()).digest()).decode().rstrip("=").lower()
