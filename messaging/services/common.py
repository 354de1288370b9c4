"""What every part of the Twilio half shares: callback URLs, numbers, and the callback errors."""

import re
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse

from integrations.errors import DomainError

# [0-9], not \d: \d also matches other scripts' digits ("+1415555０１００"), which E.164 does not allow and
# which would let a number slip past the opt-out list (kept as Twilio sends numbers: ASCII digits).
E164_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")
MAX_BODY = 1600


def refuse_own_number(to):
    """A 400 for a message or call to the hub's own TWILIO_PHONE_NUMBER: Twilio refuses To = From (21266).

    Refused here, before a row or a task exists, instead of by Twilio later. With only a Messaging
    Service the hub does not know the pool's numbers, so a send to one of those is still Twilio's to refuse.
    """
    own = re.sub(r"[^+0-9]", "", settings.TWILIO_PHONE_NUMBER or "")
    if own and to == own:
        why = "This is the hub's own number (TWILIO_PHONE_NUMBER); it cannot message or call itself."
        raise DomainError(400, "invalid", why, fields={"to": [why]})


def public_url(name, **query):
    """The URL Twilio calls us back on: APP_URL (what Twilio sees, not what a proxy forwards)."""
    url = settings.APP_URL + reverse(name)
    return f"{url}?{urlencode(query)}" if query else url


class StaleEvent(Exception):
    """A callback that would move a row backwards (it arrived late or twice)."""


class UnknownObject(Exception):
    """A callback about something the hub never sent."""


def row_for_callback(model, *, sid, ref, what):
    """The row (locked) a status callback is about: by Twilio's SID, else by our id in the callback URL.

    The callback may beat our task's write of the SID; the URL carries our id,
    and the SID is stamped on the row here. UnknownObject if neither matches.
    """
    row = model.objects.select_for_update().filter(external_id=sid).first()
    if row is None and ref and str(ref).isdigit():
        row = model.objects.select_for_update().filter(pk=int(ref), external_id__isnull=True).first()
        if row is not None:
            model.objects.filter(pk=row.pk).update(external_id=sid, send_doubt=model.SendDoubt.NONE)
    if row is None:
        raise UnknownObject(f"no {what} {sid}")
    return row


def call_by_sid(payload):
    """The call (locked) a voice callback names by CallSid; UnknownObject if the hub has none."""
    from ..models import CallLog

    call = CallLog.objects.select_for_update().filter(external_id=payload.get("CallSid", "")).first()
    if call is None:
        raise UnknownObject(f"no call with CallSid {payload.get('CallSid')}")
    return call
