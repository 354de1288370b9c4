"""Outlook mail over Microsoft Graph with httpx: the only module that speaks Graph.

Why httpx and not msgraph-sdk: the SDK is async-first (kiota) and would put
an event loop inside Celery workers; it wants azure-identity credentials where
the hub already holds and refreshes its own tokens (integrations.oauth); its
middleware retries 429/503 by itself, which would hide attempts from the call
log and multiply them under our one retry loop; and its models add little over
the JSON we normalise anyway. Plain httpx keeps one request = one gateway
attempt = one ProviderCall, and respx intercepts it in tests. Every request runs
inside `GRAPH.attempt` (an `HttpxAdapter`: httpx's timeouts and transport
failures translated once); Graph's error answers are translated by `translate`.

- Per mailbox, at most GRAPH_MAILBOX_CONCURRENCY requests at a time (Graph
  allows 4 concurrent requests per app per mailbox) on the shared limiter;
  429/503 `Retry-After` is honoured by the gateway (a floor, never cut).
- Listing asks for the attachments' metadata in the same request ($expand),
  and fetching several messages by id uses $batch of up to 20.
- A Graph paging link is only ever followed if it points at GRAPH_API_BASE:
  the token must never be sent anywhere else.
- Every request asks for immutable ids (`Prefer: IdType="ImmutableId"`): a
  message keeps its id when it moves between folders, including from Drafts
  to Sent Items, which is how a send returns the sent message's id.

Sending. Graph's sendMail answers 202 with no body, so the id of what was
sent is unknown. With Mail.ReadWrite granted the hub instead creates a draft
from the MIME (POST /me/messages, immutable id), adds the files that did not
fit in the MIME, and sends the draft (POST /me/messages/{id}/send, 202): the
draft's immutable id is the sent message's id in Sent Items, and its
internetMessageId and conversationId are known before sending. (The copy
lands in Sent Items a moment after the 202, so a GET right away may 404.)
A connection with Mail.Send only falls back to sendMail: id "" and no files
above GRAPH_INLINE_ATTACHMENT_BYTES (403 naming Mail.ReadWrite). Neither send
takes an idempotency key. A send retried after an unknown outcome first asks
the draft it went out through, whose id the hub stored before sending
(`draft_sent_state`): still a draft, it was not sent and is sent now (no
second draft); the sent copy, or gone (404, the copy not yet in Sent Items),
it was sent. A sendMail, which leaves no draft to ask, is looked up in Sent
Items by its Message-ID (`sent_lookup`, services.writing).

Attachments. A request to Graph carries at most 4 MB, so files go inside the
MIME only while they add up to GRAPH_INLINE_ATTACHMENT_BYTES (3 MB; MIME is
base64). Above that, each file is added to the draft on its own: up to 3 MB
as a fileAttachment, larger through an upload session
(POST .../attachments/createUploadSession, then PUTs of
GRAPH_UPLOAD_CHUNK_BYTES, a multiple of 320 KiB under 4 MB, with
Content-Range) to the session's pre-authenticated uploadUrl, which gets no
Authorization header. Up to 150 MB per message (MAIL_MAX_ATTACHMENT_BYTES;
a tenant's own MaxSendSize, 35 MB by default in Exchange Online, may be
lower: Graph's error is passed on). A draft whose files failed to upload is
deleted, not left behind.
"""

# A package by concern; every name is importable from here, as from the one module it was.
from .. import NotFound  # noqa: F401
from .client import (  # noqa: F401
    BATCH_SIZE,
    EXPAND_ATTACHMENTS,
    GRAPH,
    IMMUTABLE_IDS,
    PROVIDER,
    SELECT,
    GraphMailAdapter,
    _call,
    _client,
    _follow,
    base,
    decode_token,
    encode_token,
    translate,
)
from .reading import attachment, attachment_meta, folder_ids, get, get_many, list_page, thread  # noqa: F401
from .shapes import _address, _date, message_from  # noqa: F401
from .sync import delta_sync, subscribe, subscription_delete, subscription_renew, subscriptions_to  # noqa: F401
from .writing import (  # noqa: F401
    _add_attachments,
    _can_write,
    _mime_body,
    _move,
    _new_draft,
    _upload,
    attachments_apart,
    draft_create,
    draft_delete,
    draft_list,
    draft_send,
    draft_sent_state,
    draft_update,
    label_create,
    label_delete,
    label_rename,
    labels,
    modify,
    send,
    sent_lookup,
)
