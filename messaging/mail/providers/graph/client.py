"""Graph mail's one call path: the adapter, the client, error translation, one request = one attempt, paging links."""

import base64

import httpx
from django.conf import settings

from integrations import egress, gateway, limiter, oauth
from integrations.errors import DomainError, error_from_http
from integrations.providers import HttpxAdapter, graph_base

from .. import NotFound

PROVIDER = "outlook"
BATCH_SIZE = 20  # Graph's $batch limit
SELECT = (
    "id,conversationId,subject,from,toRecipients,ccRecipients,bccRecipients,bodyPreview,receivedDateTime,"
    "isRead,flag,parentFolderId,categories,hasAttachments,internetMessageId"
)
EXPAND_ATTACHMENTS = "attachments($select=id,name,contentType,size)"


def base():
    return graph_base()


IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}


def _client(conn):
    return httpx.Client(
        base_url=base(),
        auth=oauth.bearer_auth(connection=conn),
        headers=IMMUTABLE_IDS,
        timeout=gateway.timeout_for(PROVIDER),
        transport=egress.transport(),
    )


class GraphMailAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Microsoft Graph"


GRAPH = GraphMailAdapter()


def translate(response):
    """The hub's error for a Graph error answer (its `{"error": {code, message}}` body): 404 is NotFound."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    code, message = error.get("code"), error.get("message", "")
    if response.status_code == 404:
        return NotFound(PROVIDER, message or "not found", code=code, http_status=404)
    return error_from_http(
        PROVIDER,
        response.status_code,
        headers=dict(response.headers),
        code=code,
        message=message,
        request_id=response.headers.get("request-id"),
    )


def _call(conn, operation, method, url, *, expect_json=True, **kwargs):
    scope = f"mailbox:{conn.pk}"
    # A token refresh, if one is due, happens here and is its own call, not part of this one's latency.
    oauth.access_token(connection=conn)
    with (
        limiter.concurrency_slot(PROVIDER, scope, settings.GRAPH_MAILBOX_CONCURRENCY),
        GRAPH.attempt(operation, owner=conn.owner_id, scope=scope) as att,
        _client(conn) as client,
    ):
        response = client.request(method, url, **kwargs)
        att.record(
            http_status=response.status_code,
            request_id=response.headers.get("request-id"),
            units={"requests": 1},
        )
        if response.status_code >= 400:
            raise translate(response)
    if not expect_json:
        return response
    return response.json() if response.content else {}


def _follow(link):
    """A paging link from Graph, only if it points back at Graph (it carries our token)."""
    if not link.startswith(base() + "/"):
        raise DomainError(400, "invalid_page_token", "This page token does not belong to this mailbox.")
    return link[len(base()) :]


def encode_token(link):
    return base64.urlsafe_b64encode(link.encode()).decode().rstrip("=") if link else None


def decode_token(token):
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise DomainError(400, "invalid_page_token", "The page token is malformed.") from None
