"""Gmail over google-api-python-client: the only package that imports it.

- The service is built from the library's bundled discovery document (no
  discovery request) over google-auth-httplib2 with the connection's fresh
  token (integrations.oauth.google_credentials: no refresh token inside, so
  the library never refreshes behind the hub's lock). GMAIL_API_BASE points
  it (and the batch endpoint) at a local emulator.
- `execute(num_retries=0)` and httplib2.RETRIES = 1: the gateway and the
  Celery task base are the one retry loop. httplib2 also resends a request
  whose answer never started, whatever RETRIES says; the shared transport
  (integrations.google_http.OneSendHttp) stops that for everything but
  reads (messages.send takes no idempotency key: a send retried after an
  unknown outcome is first looked up in SENT by its Message-ID,
  `sent_lookup`, services.writing).
- One wrapper: every request runs inside `GMAIL.attempt` (gateway.attempt),
  which translates googleapiclient's HttpError once (`translate`).
- Quota: every request is an attempt on the "gmail" limiter scope of the
  user, costing the method's quota units (GMAIL_QUOTA_UNITS); a batch costs
  the sum of its parts. ProviderCall.units carries {"quota_units": n}.
- Listing fetches metadata in batch requests of up to 50 (one HTTP request
  for 50 messages), never one request per message.
"""

# A package by concern; every name is importable from here, as from the one module it was.
from .. import NotFound  # noqa: F401
from .client import (  # noqa: F401
    BATCH_SIZE,
    GMAIL,
    METADATA_HEADERS,
    PROVIDER,
    QUOTA_REASONS,
    RATE_REASONS,
    UNITS,
    GmailAdapter,
    _base,
    _batch,
    _batch_uri,
    _call,
    _project_budget,
    _service,
    translate,
)
from .reading import attachment, attachment_meta, get, get_many, list_page, thread  # noqa: F401
from .shapes import _decode, _headers, _walk, message_from  # noqa: F401
from .sync import full_sync, history_sync, stop, watch  # noqa: F401
from .writing import (  # noqa: F401
    _draft,
    _message_request,
    _raw,
    _rebased,
    attachments_apart,
    draft_create,
    draft_delete,
    draft_list,
    draft_send,
    draft_update,
    label_create,
    label_delete,
    label_rename,
    labels,
    modify,
    send,
    sent_lookup,
)
