from celery import shared_task

from ..errors import DomainError
from ..task_base import ProviderTask
from . import services


@shared_task(name="integrations.oauth_refresh_due", ignore_result=True)
def oauth_refresh_due():
    """Every 5 minutes: queue refreshes for tokens expiring within OAUTH_REFRESH_AHEAD_SECONDS."""
    return services.connections_refresh_due()


@shared_task(bind=True, base=ProviderTask, name="integrations.oauth_connection_refresh", ignore_result=True)
def oauth_connection_refresh(self, connection_id):
    from django.conf import settings

    from ..models import Connection

    if not Connection.objects.filter(pk=connection_id).exists():
        return  # deleted since it was queued
    # A refused grant is recorded on the row and alerted once; it is not a task failure to retry.
    try:
        services.connection_refresh(
            connection_id=connection_id,
            margin_seconds=settings.OAUTH_REFRESH_AHEAD_SECONDS,
            raise_on_reauth=False,
        )
    except DomainError as exc:
        if exc.status != 404:
            raise
        # Disconnected while the refresh ran: nothing left to refresh.


@shared_task(name="integrations.oauth_states_purge", ignore_result=True)
def oauth_states_purge():
    return services.oauth_states_purge()
