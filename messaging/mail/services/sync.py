"""Sync and push: the incremental mailbox sync, the provider's watch (start, renew, stop) and
fetching the messages a push named.
"""

import contextlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from integrations import locks, oauth
from integrations.errors import DomainError
from integrations.models import Connection
from integrations.webhooks.graph import account_subscribing, unrecorded_subscriptions_delete

from ..models import Mailbox
from ..providers import NotFound
from .access import MAIL_PROVIDERS, _adapter, mail_connection, mailbox_for
from .cache import cache_delete, cache_upsert

# How long a sync or watch may hold its mailbox (a full sync lists and fetches MAIL_FULL_SYNC_MESSAGES), and how
# long another run waits for it before it is retried later (a task) or answered 503 with Retry-After (the API).
LOCK_SECONDS = 300
LOCK_WAIT_SECONDS = 30


def mailbox_lock(conn):
    """One sync or watch of a mailbox at a time, across every process (Redis; a file lock without it).

    Each reads the mailbox's cursor and subscription, calls the provider, then writes what it read: two at once
    (a push's sync and a `POST sync/`, the beat's renewal and a `POST sync/`) stored the older answer over the
    newer (the cache a change behind, the delta link or historyId set back) or made two Graph subscriptions.
    The one that waited reads the mailbox again once it holds it, so it goes on from where the other left it."""
    return locks.held(
        "mail-mailbox",
        conn.pk,
        seconds=LOCK_SECONDS,
        wait=LOCK_WAIT_SECONDS,
        provider=MAIL_PROVIDERS.get(conn.provider, conn.provider),
        busy="another sync of this mailbox is running",
        retry_after=LOCK_WAIT_SECONDS,
    )


def mailbox_sync(*, connection_id):
    """Bring the cache up to date: Gmail history since the stored historyId (a full resync when Gmail answers
    404, history gone), Graph delta from the stored delta link. Idempotent; push handlers and tasks call it."""
    conn = Connection.objects.get(pk=connection_id)
    with mailbox_lock(conn):
        return _mailbox_sync(conn)


def _mailbox_sync(conn):
    mailbox = mailbox_for(conn)
    adapter = _adapter(conn)
    if conn.provider == "google_oauth":
        result = None
        # Incremental only from a cursor a full sync established; a first sync lists the newest messages.
        if mailbox.history_id and mailbox.full_sync_at is not None:
            try:
                result = adapter.history_sync(conn, start_history_id=mailbox.history_id)
            except NotFound:
                result = None  # history older than Gmail keeps (about a week): start over
        if result is None:
            result = adapter.full_sync(conn, limit=settings.MAIL_FULL_SYNC_MESSAGES)
        fields = {"history_id": result.cursor}
    else:
        # Without a delta link, delta returns the whole inbox (a full sync) and the link to continue from.
        result = adapter.delta_sync(conn, delta_link=mailbox.delta_link)
        fields = {"delta_link": result.cursor}
        if result.folder_id:
            fields["inbox_folder_id"] = result.folder_id
    now = timezone.now()
    with transaction.atomic():
        # A full sync lists what exists; anything else cached was deleted meanwhile, or (Graph, whose delta follows
        # the inbox) left the inbox or was never in it: a listing cached it, and no sync would ever name it again.
        if result.full:
            mailbox.messages.exclude(external_id__in=[m.id for m in result.upserted]).delete()
        cache_upsert(mailbox, result.upserted)
        cache_delete(mailbox, result.deleted)
        fields["last_synced_at"] = now
        if result.full:
            fields["full_sync_at"] = now
        Mailbox.objects.filter(pk=mailbox.pk).update(**fields)
    return result


def push_start(*, owner, connection_id):
    """Register push for this mailbox (Gmail watch / Graph subscription) and sync it."""
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    mailbox_watch(connection_id=conn.pk)
    mailbox_sync(connection_id=conn.pk)
    return Mailbox.objects.get(connection=conn)


def mailbox_watch(*, connection_id):
    """Start or renew push: Gmail users.watch (lapses after 7 days); a Graph subscription (created or extended,
    never a second one: under the mailbox's lock, a run that waited finds the subscription the other made)."""
    conn = Connection.objects.get(pk=connection_id)
    with mailbox_lock(conn):
        _mailbox_watch(conn)


def _mailbox_watch(conn):
    mailbox = mailbox_for(conn)
    adapter = _adapter(conn)
    if conn.provider == "google_oauth":
        if not settings.GMAIL_PUBSUB_TOPIC:
            raise DomainError(
                503,
                "push_not_configured",
                "Gmail push is not configured; set GMAIL_PUBSUB_TOPIC.",
                missing=["GMAIL_PUBSUB_TOPIC"],
            )
        history_id, expires = adapter.watch(conn, topic=settings.GMAIL_PUBSUB_TOPIC)
        update = {"watch_expires_at": expires}
        if not mailbox.history_id:
            update["history_id"] = history_id
        Mailbox.objects.filter(pk=mailbox.pk).update(**update)
        return
    expires_at = timezone.now() + timedelta(minutes=settings.GRAPH_SUBSCRIPTION_MINUTES)
    if mailbox.subscription_id:
        try:
            expires = adapter.subscription_renew(conn, mailbox.subscription_id, expires_at=expires_at)
            Mailbox.objects.filter(pk=mailbox.pk).update(subscription_expires_at=expires)
            return
        except NotFound:
            pass  # Graph removed it: create a new one
    client_state = secrets.token_urlsafe(32)
    url = settings.APP_URL + reverse("mail-outlook-webhook")
    # The cleanup, the create and its row under the account's lock too: another hub user's connection to the
    # same Outlook account subscribes the same resource (the inbox) and Graph lists both; its cleanup, run while
    # this create was in flight, deleted the subscription this mailbox was about to record.
    with account_subscribing(
        conn,
        notification_url=url,
        seconds=LOCK_SECONDS,
        wait=LOCK_WAIT_SECONDS,
        provider=MAIL_PROVIDERS.get(conn.provider, conn.provider),
    ):
        _delete_unrecorded_subscriptions(conn, adapter, url)
        subscription_id, expires = adapter.subscribe(
            conn, notification_url=url, client_state=client_state, expires_at=expires_at
        )
        mailbox.subscription_id, mailbox.subscription_expires_at, mailbox.client_state = (
            subscription_id,
            expires,
            client_state,
        )
        mailbox.save(update_fields=["subscription_id", "subscription_expires_at", "client_state"])


def _delete_unrecorded_subscriptions(conn, adapter, notification_url):
    """This user's mail subscriptions at our URL that no mailbox records, deleted (a create whose answer was lost)."""

    def delete(subscription_id):
        with contextlib.suppress(NotFound):  # already gone
            adapter.subscription_delete(conn, subscription_id)

    listed = adapter.subscriptions_to(conn, notification_url)
    recorded = Mailbox.objects.filter(subscription_id__in=listed).values_list("subscription_id", flat=True)
    unrecorded_subscriptions_delete(listed, recorded, delete)


def mailboxes_renew_due():
    """Beat (daily is enough; runs hourly): renew Gmail watches and Graph subscriptions that end within a day."""
    from integrations.task_base import enqueue_on_commit

    from ..tasks import mail_watch_renew

    horizon = timezone.now() + timedelta(days=1)
    ids = set(Mailbox.objects.filter(watch_expires_at__lt=horizon).values_list("connection_id", flat=True))
    ids |= set(Mailbox.objects.filter(subscription_expires_at__lt=horizon).values_list("connection_id", flat=True))
    for pk in sorted(ids):
        enqueue_on_commit(mail_watch_renew, pk)
    return len(ids)


def messages_fetch(*, connection_id, message_ids):
    conn = Connection.objects.get(pk=connection_id)
    messages = _adapter(conn).get_many(conn, list(message_ids))
    cache_upsert(mailbox_for(conn), messages)
    return len(messages)


def messages_fetch_paced(*, connection_id, message_ids):
    """Queue the fetch of many messages as tasks of one batch each; the limiter paces them at the user's quota."""
    from integrations.task_base import enqueue_on_commit

    from ..tasks import mail_fetch

    size = 50
    chunks = [list(message_ids[i : i + size]) for i in range(0, len(message_ids), size)]
    for chunk in chunks:
        enqueue_on_commit(mail_fetch, connection_id, chunk)
    return len(chunks)


def mailbox_unwatch(conn):
    """Before a connection's tokens go: stop Gmail's watch / delete the Graph subscription (oauth.on_disconnect)."""
    mailbox = Mailbox.objects.filter(connection=conn).first()
    if mailbox is None or conn.provider not in MAIL_PROVIDERS or conn.status != Connection.Status.ACTIVE:
        return
    adapter = _adapter(conn)
    try:
        if conn.provider == "google_oauth" and mailbox.watch_expires_at and mailbox.watch_expires_at > timezone.now():
            if not _gmail_watch_shared(conn):
                adapter.stop(conn)
        elif conn.provider == "microsoft_oauth" and mailbox.subscription_id:
            adapter.subscription_delete(conn, mailbox.subscription_id)
    except NotFound:
        pass  # already gone: what we wanted


def _gmail_watch_shared(conn):
    """Whether another hub user's connection to the same Gmail account has its push on.

    Gmail keeps one watch per mailbox (users.stop names no channel, only the mailbox): stopping it for one
    connection ended the pushes of every other connection to that account, whose cache then went stale until
    its watch renewal, days later. The last connection with a watch stops it.
    """
    return Mailbox.objects.filter(
        connection__in=oauth.connections_sharing_account(connection=conn), watch_expires_at__gt=timezone.now()
    ).exists()
