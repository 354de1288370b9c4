"""Mail verbs for one connection, whichever the provider: views, tasks and webhook handlers all call these.

Every verb starts from `mail_connection` (the owner's connection, checked for
the scopes that verb needs: 404 / 403 naming the scope / 409 re-authorize),
then calls the connection's adapter (providers.gmail or providers.graph),
which runs each request through the gateway with the provider's quota units.
The cache (MailMessage) is filled by listing and by push-driven sync; the list
endpoint reads it when the mailbox is fresh (synced by push within
MAIL_CACHE_FRESH_SECONDS) and the client asked for the plain newest page.

access.py   scopes per verb, mail_connection, mailbox_for
cache.py    the MailMessage cache
reading.py  list, message, thread, attachment
writing.py  send, drafts, labels, modify
sync.py     mailbox sync and push watches
"""

from .access import GMAIL, MAIL_PROVIDERS, NEED, mail_connection, mailbox_for
from .cache import cache_delete, cache_upsert
from .reading import attachment_get, message_get, message_list, thread_get
from .sync import (
    mailbox_sync,
    mailbox_unwatch,
    mailbox_watch,
    mailboxes_renew_due,
    messages_fetch,
    messages_fetch_paced,
    push_start,
)
from .writing import (
    draft_create,
    draft_delete,
    draft_list,
    draft_send,
    draft_update,
    label_create,
    label_delete,
    label_list,
    label_rename,
    message_modify,
    message_send,
    outgoing_from,
)

__all__ = [
    "GMAIL",
    "MAIL_PROVIDERS",
    "NEED",
    "mail_connection",
    "mailbox_for",
    "cache_delete",
    "cache_upsert",
    "attachment_get",
    "message_get",
    "message_list",
    "thread_get",
    "draft_create",
    "draft_delete",
    "draft_list",
    "draft_send",
    "draft_update",
    "label_create",
    "label_delete",
    "label_list",
    "label_rename",
    "message_modify",
    "message_send",
    "outgoing_from",
    "mailbox_sync",
    "mailbox_unwatch",
    "mailbox_watch",
    "mailboxes_renew_due",
    "messages_fetch",
    "messages_fetch_paced",
    "push_start",
]
