"""The calendars of a connection: the adapter for one, listing and refreshing them, starting push."""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from integrations import oauth
from integrations.errors import DomainError, ProviderError
from integrations.models import Connection
from integrations.task_base import enqueue_on_commit

from ...models import Calendar

KINDS = {"google_oauth": Calendar.Kind.GOOGLE, "microsoft_oauth": Calendar.Kind.MICROSOFT}
CAL = "https://www.googleapis.com/auth/calendar."
NEED = {
    "read": {
        "google_oauth": [(f"{CAL}events", f"{CAL}readonly")],
        "microsoft_oauth": [("Calendars.ReadWrite", "Calendars.Read")],
    },
    "write": {"google_oauth": [f"{CAL}events"], "microsoft_oauth": ["Calendars.ReadWrite"]},
}
LIST_FRESH_SECONDS = 300
logger = logging.getLogger(__name__)


def adapter_for(calendar):
    if calendar.kind == Calendar.Kind.GOOGLE:
        from .. import google

        return google
    from .. import graph

    return graph


def _connection(*, owner, connection_id, verb):
    provider = Connection.objects.filter(pk=connection_id, owner=owner).values_list("provider", flat=True).first()
    if provider not in KINDS:
        raise DomainError(
            404, "connection_not_found", "No such calendar connection; list yours at /api/v1/connections/."
        )
    return oauth.connection_for(
        owner=owner, connection_id=connection_id, capability="calendar", need=NEED[verb][provider]
    )


def _listed_key(connection_id):
    return f"calendars:listed:{connection_id}"


def calendars_refresh(*, connection):
    """Upsert the connection's calendars from the provider; calendars it no longer lists are removed."""
    kind = KINDS[connection.provider]
    found = adapter_for(Calendar(kind=kind)).calendars_list(connection)
    listed = [c.external_id for c in found]
    for calendar in Calendar.objects.filter(connection=connection).exclude(external_id__in=listed):
        _unwatch_quietly(calendar)
    new = []
    with transaction.atomic():
        for item in found:
            row, created = Calendar.objects.update_or_create(
                connection=connection,
                external_id=item.external_id,
                defaults={
                    "owner_id": connection.owner_id,
                    "kind": kind,
                    "name": item.name[:255],
                    "primary": item.primary,
                    "time_zone": item.time_zone,
                    "access_role": item.access_role,
                    "raw": item.raw,
                },
            )
            if created:
                new.append(row.pk)
        Calendar.objects.filter(connection=connection).exclude(external_id__in=listed).delete()
        if push_automatic(kind):
            from ...tasks import calendar_watch_task

            for pk in new:
                enqueue_on_commit(calendar_watch_task, pk)
    cache.set(_listed_key(connection.pk), True, LIST_FRESH_SECONDS)


def _unwatch_quietly(calendar):
    """A calendar the provider no longer lists: close its channel / subscription before its row goes (gone at the
    provider already = done), or the provider keeps posting notifications the hub refuses until they lapse."""
    from ..sync import calendar_unwatch

    try:
        calendar_unwatch(calendar)
    except ProviderError:
        logger.warning("push of a calendar no longer listed left to lapse", extra={"calendar": calendar.pk})


def push_automatic(kind):
    """Push starts by itself for a newly listed calendar when the provider can reach the hub: an HTTPS APP_URL
    (both providers refuse anything else) and, for Google, the channel secret. Else POST .../watch/ says why."""
    if not settings.CALENDAR_PUSH_AUTO or not settings.APP_URL.startswith("https://"):
        return False
    return kind != Calendar.Kind.GOOGLE or bool(settings.GOOGLE_CALENDAR_CHANNEL_SECRET)


def calendar_list(*, owner, refresh=False):
    """The owner's calendars of every active Google/Microsoft connection with the calendar capability."""
    # Filtered in Python: JSON containment is PostgreSQL-only and `make run` uses SQLite.
    connections = [
        c
        for c in Connection.objects.filter(owner=owner, provider__in=list(KINDS), status=Connection.Status.ACTIVE)
        if "calendar" in (c.capabilities or [])
    ]
    for conn in connections:
        if refresh or not cache.get(_listed_key(conn.pk)):
            calendars_refresh(connection=_connection(owner=owner, connection_id=conn.pk, verb="read"))
    return Calendar.objects.filter(owner=owner, connection__in=connections).select_related("connection")


def calendar_push_start(*, owner, calendar_id):
    """Start (or renew) push for the calendar and bring it up to date: what POST .../watch/ runs."""
    from ..sync import calendar_sync, calendar_watch

    calendar = calendar_get(owner=owner, calendar_id=calendar_id)
    _calendar_conn(calendar, "read")
    if not settings.APP_URL.startswith("https://"):
        raise DomainError(
            409,
            "push_unreachable",
            f"Google and Microsoft deliver notifications to HTTPS URLs only; APP_URL is {settings.APP_URL}.",
        )
    calendar_watch(calendar_id=calendar.pk)
    calendar_sync(calendar_id=calendar.pk)
    return Calendar.objects.select_related("connection").get(pk=calendar.pk)


def calendar_get(*, owner, calendar_id):
    calendar = Calendar.objects.filter(pk=calendar_id, owner=owner).select_related("connection").first()
    if calendar is None:
        raise DomainError(404, "not_found", "No such calendar; list yours at /api/v1/calendars/.")
    return calendar


def _calendar_conn(calendar, verb):
    return _connection(owner=calendar.owner, connection_id=calendar.connection_id, verb=verb)
