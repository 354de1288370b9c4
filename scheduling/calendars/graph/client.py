"""Graph calendar client: the adapter, one request per gateway attempt, errors and paging."""

import functools

import httpx

from integrations import egress, gateway, oauth
from integrations.errors import PermanentError
from integrations.providers import HttpxAdapter, graph_base

from ...providers.freebusy import graph_translate

PROVIDER = "microsoft_calendar"


class SyncTokenExpired(Exception):
    """Graph answered 410 Gone to a delta link: start over without one."""


class GraphCalendarAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Microsoft Graph"


GRAPH = GraphCalendarAdapter()


def base():
    return graph_base()


@functools.cache
def _client():
    return httpx.Client(
        headers={"Accept": "application/json", "User-Agent": "integration-hub"}, transport=egress.transport()
    )


def _call(conn, operation, method, url, **kwargs):
    oauth.access_token(connection=conn)  # a refresh, if due, is its own call (on microsoft_oauth)
    if not url.startswith("https://") and not url.startswith("http://"):
        url = base() + url
    elif not url.startswith(base() + "/"):
        raise PermanentError(PROVIDER, "Graph gave a link outside GRAPH_API_BASE; not followed with the user's token")
    with GRAPH.attempt(operation, owner=conn.owner_id, scope=f"mailbox:{conn.pk}") as att:
        response = _client().request(
            method, url, auth=oauth.bearer_auth(connection=conn), timeout=gateway.timeout_for(PROVIDER), **kwargs
        )
        att.record(
            http_status=response.status_code, request_id=response.headers.get("request-id"), units={"requests": 1}
        )
        if response.status_code >= 400:
            raise graph_translate(response)
    return response.json() if response.content else {}


def _gone(exc):
    return isinstance(exc, PermanentError) and exc.http_status in (404, 410)


def _pages(conn, operation, url, **kwargs):
    while url:
        page = _call(conn, operation, "GET", url, **kwargs)
        kwargs = {}
        yield page
        url = page.get("@odata.nextLink")
