"""Which connection a mail verb may use: the scopes each verb needs per provider, the owner's
connection checked against them, and its adapter and mailbox.
"""

from integrations import oauth
from integrations.errors import DomainError
from integrations.models import Connection

from ..models import Mailbox
from ..providers import for_connection

GMAIL = "https://www.googleapis.com/auth/gmail."
# Per verb and provider: the scopes needed (a tuple: any one of them suffices).
NEED = {
    "read": {
        "google_oauth": [(f"{GMAIL}modify", f"{GMAIL}readonly")],
        "microsoft_oauth": [("Mail.ReadWrite", "Mail.Read")],
    },
    "send": {"google_oauth": [(f"{GMAIL}send", f"{GMAIL}compose", f"{GMAIL}modify")], "microsoft_oauth": ["Mail.Send"]},
    "compose": {"google_oauth": [(f"{GMAIL}compose", f"{GMAIL}modify")], "microsoft_oauth": ["Mail.ReadWrite"]},
    "modify": {"google_oauth": [f"{GMAIL}modify"], "microsoft_oauth": ["Mail.ReadWrite"]},
    "labels": {"google_oauth": [(f"{GMAIL}labels", f"{GMAIL}modify")], "microsoft_oauth": ["Mail.ReadWrite"]},
}
MAIL_PROVIDERS = {"google_oauth": "gmail", "microsoft_oauth": "outlook"}


def mail_connection(*, owner, connection_id, verb):
    row = Connection.objects.filter(pk=connection_id, owner=owner).values_list("provider", flat=True).first()
    if row is None or row not in NEED[verb]:
        raise DomainError(404, "connection_not_found", "No such mail connection; list yours at /api/v1/connections/.")
    return oauth.connection_for(owner=owner, connection_id=connection_id, capability="mail", need=NEED[verb][row])


def _adapter(conn):
    return for_connection(conn)


def mailbox_for(conn):
    mailbox, _ = Mailbox.objects.get_or_create(connection=conn)
    return mailbox
