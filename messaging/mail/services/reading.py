"""Reading verbs: the message list (from the cache when fresh), a message, a thread, an attachment."""

from django.db import connection

from integrations.errors import DomainError

from ..models import Mailbox, MailMessage
from .access import _adapter, mail_connection, mailbox_for
from .cache import _fresh, _from_cache, cache_upsert

# Gmail's messages.list leaves these out unless asked for by label (includeSpamTrash=false); the cache holds
# them too (history sync sees every change, a listing by label caches them), so its answer leaves them out alike.
GMAIL_LISTED_ONLY_BY_LABEL = frozenset({"SPAM", "TRASH"})
# Their Outlook counterparts, by Graph's well-known folder names: Graph's GET /me/messages lists every folder, so a
# list without `label` leaves these out itself, and a client gets the same mail from either provider's list.
OUTLOOK_LISTED_ONLY_BY_LABEL = ("deleteditems", "junkemail")


def _cached_page(conn, mailbox, label, size=50):
    if conn.provider == "microsoft_oauth":
        label = mailbox.inbox_folder_id  # the only folder the cache answers (_cache_holds)
    rows = mailbox.messages.all()
    # SQLite (what `make run` uses) has no JSON `contains`: Django refuses the lookup there, so the rows are
    # matched here instead, a mailbox's cache being small enough to read through for one development page.
    filter_in_python = bool(label) and not connection.features.supports_json_field_contains
    if label and not filter_in_python:
        rows = rows.filter(labels__contains=[label])
    hidden = GMAIL_LISTED_ONLY_BY_LABEL if conn.provider == "google_oauth" and not label else frozenset()
    page = []
    for row in rows.iterator(chunk_size=100):
        if filter_in_python and label not in (row.labels or []):
            continue
        if hidden & set(row.labels or []):
            continue
        page.append(row)
        if len(page) == size:
            break
    return page


def _cache_holds(conn, mailbox, label):
    """Whether push keeps the cache complete for this label. Gmail's history names changes under every label.
    Outlook's delta query and subscription follow the inbox alone: only `inbox` (Graph's well-known name) or the
    inbox's folder id is read from the cache, and only once a sync has named that id (the rows of other folders
    are what listings cached, nothing keeps them). Every other folder, and a list without `label`, which on
    Outlook means every folder (Graph's GET /me/messages), is read from Graph."""
    if conn.provider != "microsoft_oauth":
        return True
    inbox = mailbox.inbox_folder_id
    return bool(inbox) and (label.lower() == "inbox" or label == inbox)


def message_list(*, owner, connection_id, q="", label="", page_token="", filter_=""):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    mailbox = mailbox_for(conn)
    if not (q or page_token or filter_) and _cache_holds(conn, mailbox, label) and _fresh(mailbox):
        rows = _cached_page(conn, mailbox, label)
        adapter = _adapter(conn)
        return {"messages": [_from_cache(r, adapter) for r in rows], "next_page_token": None, "source": "cache"}
    kwargs = {"q": q, "label": label, "page_token": page_token}
    if filter_:
        if conn.provider != "microsoft_oauth":
            raise DomainError(400, "invalid_filter", "filter ($filter) is for Outlook; use q with Gmail search syntax.")
        kwargs["filter_"] = filter_
    if conn.provider == "microsoft_oauth" and not label:
        kwargs["leave_out_folders"] = _left_out_folder_ids(conn, mailbox)
    page = _adapter(conn).list_page(conn, **kwargs)
    cache_upsert(mailbox, page.messages)
    return {"messages": page.messages, "next_page_token": page.next_page_token, "source": "provider"}


def _left_out_folder_ids(conn, mailbox):
    """Deleted Items' and Junk Email's ids: asked of Graph on the mailbox's first list without a folder, then kept
    (a well-known folder keeps its id)."""
    if mailbox.left_out_folder_ids is None:
        mailbox.left_out_folder_ids = _adapter(conn).folder_ids(conn, OUTLOOK_LISTED_ONLY_BY_LABEL)
        Mailbox.objects.filter(pk=mailbox.pk).update(left_out_folder_ids=mailbox.left_out_folder_ids)
    return mailbox.left_out_folder_ids


def message_get(*, owner, connection_id, message_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    return _adapter(conn).get(conn, message_id)


def thread_get(*, owner, connection_id, thread_id, include_spam_trash=False):
    """A conversation's messages but those in the bin or spam, which the list without `label` leaves out too:
    neither Gmail's threads.get nor Graph's conversation read leaves them out, so a message the list no longer
    showed (trashed, or moved to junk) came back in its thread. `include_spam_trash` asks for every message."""
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    messages = _adapter(conn).thread(conn, thread_id)
    if not messages:
        raise DomainError(404, "not_found", "No such thread.")
    if include_spam_trash:
        return messages
    hidden = _listed_only_by_label(conn, mailbox_for(conn))
    # A Graph message's labels are its folder's id, then its categories (names, never a folder's id).
    shown = [m for m in messages if not hidden.intersection(m.labels)]
    if not shown:
        raise DomainError(
            404,
            "not_found",
            "No such thread outside the bin and spam; include_spam_trash=true shows the messages there.",
        )
    return shown


def _listed_only_by_label(conn, mailbox):
    """What a list without `label` leaves out: Gmail's SPAM and TRASH labels, Outlook's Deleted Items and Junk
    Email folders (by id)."""
    if conn.provider == "microsoft_oauth":
        return frozenset(_left_out_folder_ids(conn, mailbox))
    return GMAIL_LISTED_ONLY_BY_LABEL


def attachment_get(*, owner, connection_id, message_id, attachment_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    adapter = _adapter(conn)
    row = MailMessage.objects.filter(mailbox__connection=conn, external_id=message_id).first()
    known = next((a for a in (row.attachments if row else []) if a.get("id") == attachment_id), None)
    data = adapter.attachment(conn, message_id, attachment_id, part_id=(known or {}).get("part_id", ""))
    if known is None:
        # Not in the cache: the message was never listed or synced (or its files changed since): the provider
        # says, where it can.
        found = adapter.attachment_meta(conn, message_id, attachment_id)
        known = found.__dict__ if found else {}
    return data, {
        "filename": known.get("filename") or "attachment",
        "mime_type": known.get("mime_type") or "application/octet-stream",
    }
