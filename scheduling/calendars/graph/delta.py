"""Graph calendar delta sync over a calendar view, and change-notification subscriptions."""

import datetime as dt

from django.conf import settings

from integrations.errors import PermanentError
from integrations.webhooks.graph import subscription_body
from integrations.webhooks.graph import subscriptions_to as graph_subscriptions_to

from .. import times
from ..types import SyncResult
from .client import SyncTokenExpired, _call, _gone, _pages
from .events import event_get
from .shapes import event_data


def events_sync(conn, calendar, *, sync_token=""):
    """Changes since the delta link (every instance in the window without one); SyncTokenExpired on 410."""
    if sync_token:
        url, kwargs = sync_token, {}
    else:
        now = dt.datetime.now(dt.UTC)
        url = f"/me/calendars/{calendar.external_id}/calendarView/delta"
        kwargs = {
            "params": {
                "startDateTime": times.rfc3339(now - dt.timedelta(days=settings.CALENDAR_GRAPH_WINDOW_DAYS_BACK)),
                "endDateTime": times.rfc3339(now + dt.timedelta(days=settings.CALENDAR_GRAPH_WINDOW_DAYS_AHEAD)),
            }
        }
    events, removed, cursor, masters = [], [], "", set()
    window = None
    if not sync_token:
        params = kwargs["params"]
        window = (times.parse_instant(params["startDateTime"]), times.parse_instant(params["endDateTime"]))
    try:
        for page in _pages(conn, "events.delta", url, **kwargs):
            for item in page.get("value") or []:
                data = event_data(item, calendar_zone=calendar.time_zone)
                if "@removed" in item:
                    removed.append(data.external_id)
                    continue
                events.append(data)
                if data.recurring_event_id:
                    masters.add(data.recurring_event_id)
            cursor = page.get("@odata.deltaLink") or cursor
    except PermanentError as exc:
        if sync_token and exc.http_status == 410:
            raise SyncTokenExpired from exc
        raise
    from ...models import CalendarEvent

    # A removed occurrence of a series is a new entry in its master's cancelledOccurrences (an EXDATE).
    masters |= set(
        CalendarEvent.objects.filter(calendar=calendar, external_id__in=removed)
        .exclude(recurring_event_id="")
        .values_list("recurring_event_id", flat=True)
    )
    for master_id in sorted(masters - {e.external_id for e in events}):
        try:
            events.insert(0, event_get(conn, calendar, master_id))
        except PermanentError as exc:
            if not _gone(exc):
                raise
            removed.append(master_id)  # the whole series was deleted: its row goes with its occurrences
    return SyncResult(events=events, removed=removed, cursor=cursor, full=not sync_token, window=window)


def _resource(calendar):
    return f"/me/calendars/{calendar.external_id}/events"


def subscribe(conn, calendar, *, notification_url, client_state, expires_at):
    body = subscription_body(
        resource=_resource(calendar),
        notification_url=notification_url,
        client_state=client_state,
        expires_at=expires_at,
    )
    answer = _call(conn, "subscription.create", "POST", "/subscriptions", json=body)
    return answer["id"], times.parse_instant(answer["expirationDateTime"])


def subscriptions_to(conn, calendar, *, notification_url):
    """The ids of this app's subscriptions for the user (GET /subscriptions) on this calendar's events that notify
    `notification_url`; their clientState is not answered."""
    return graph_subscriptions_to(
        lambda link: _call(conn, "subscription.list", "GET", link), notification_url, resource=_resource(calendar)
    )


def subscription_renew(conn, subscription_id, *, expires_at):
    """The new expiry, or None when Graph no longer has the subscription (create a new one)."""
    try:
        answer = _call(
            conn,
            "subscription.renew",
            "PATCH",
            f"/subscriptions/{subscription_id}",
            json={"expirationDateTime": expires_at.isoformat()},
        )
    except PermanentError as exc:
        if _gone(exc):
            return None
        raise
    return times.parse_instant(answer["expirationDateTime"])


def subscription_delete(conn, subscription_id):
    try:
        _call(conn, "subscription.delete", "DELETE", f"/subscriptions/{subscription_id}")
    except PermanentError as exc:
        if not _gone(exc):
            raise
