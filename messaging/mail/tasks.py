from celery import shared_task

from integrations.task_base import ProviderTask

from . import services


@shared_task(bind=True, base=ProviderTask, name="mail.sync", ignore_result=True)
def mail_sync(self, connection_id):
    """Bring one mailbox's cache up to date (push notifications and renewals queue this)."""
    from integrations.models import Connection

    if Connection.objects.filter(pk=connection_id).exists():
        services.mailbox_sync(connection_id=connection_id)


@shared_task(bind=True, base=ProviderTask, name="mail.watch_renew", ignore_result=True)
def mail_watch_renew(self, connection_id):
    from integrations.models import Connection

    if Connection.objects.filter(pk=connection_id, status=Connection.Status.ACTIVE).exists():
        services.mailbox_watch(connection_id=connection_id)


@shared_task(name="mail.watch_renew_due", ignore_result=True)
def mail_watch_renew_due():
    return services.mailboxes_renew_due()


@shared_task(bind=True, base=ProviderTask, name="mail.fetch", ignore_result=True)
def mail_fetch(self, connection_id, message_ids):
    """Cache these messages' metadata (one batch request of up to 50): the unit of a paced bulk fetch."""
    services.messages_fetch(connection_id=connection_id, message_ids=message_ids)
