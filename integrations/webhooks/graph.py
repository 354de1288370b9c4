"""Microsoft Graph change notifications: the checks every Graph subscription shares (mail, calendars, Teams),
and the lister of the app's subscriptions each uses before it makes one (subscriptions_to), with the cleanup of
those no row records (unrecorded_subscriptions_delete) and the account's lock it runs under (account_subscribing).

A basic Graph notification is not signed. What proves it comes from Graph is
the `clientState` the hub chose when it created the subscription: a random
secret (new_client_state()) stored with the subscription, which Graph repeats
in every notification. So the "signature" is per subscription, inside the
body, and each item of a delivery is checked against its own subscription's
stored secret (constant time).

At the notification URL (graph_webhook_view):

1. Validation handshake. When a subscription is created (and for the
   lifecycle URL too) Graph POSTs `?validationToken=...` with an empty
   text/plain body and wants the token back, 200 text/plain, within 10 s.
   It is answered before the inbox; nothing is stored.
2. Change notifications: JSON `{"value": [item, ...]}`, several per POST and
   possibly from several subscriptions. Each item names `subscriptionId`,
   `changeType` (created / updated / deleted), `resource`, `resourceData`.
3. Lifecycle notifications (the subscription's lifecycleNotificationUrl; the
   same URL is fine): items with `lifecycleEvent` instead of changeType:
   - reauthorizationRequired: renew the subscription (PATCH expirationDateTime
     reauthorizes it) or POST /subscriptions/{id}/reauthorize;
   - subscriptionRemoved: Graph dropped it; create a new one, then resync;
   - missed: some notifications were not delivered; resync (delta query).

Status policy (the WebhookVerifier base's, tests/contracts/webhooks.py's
GraphNotificationContract): body too big 413, not JSON / wrong content type /
no `value` / an item without subscriptionId, changeType or lifecycleEvent
400, MICROSOFT_CLIENT_ID unset 503 (no subscription can exist), an item
without clientState 403 missing_signature, a clientState that does not match
its subscription's 403 bad_signature (the whole delivery: Graph never sends a
wrong one). A delivery with resource data (`encryptedContent`) must also carry
validationTokens that verify for its tenants (graph_tokens): else 403, 503 while
Microsoft's signing keys cannot be read. Items naming a subscription the hub does not know are dropped
when other items of the delivery verify (a subscription deleted here that
Graph still serves must not make Graph retry the good ones for hours); when
none verifies, 403.

Event ids: Graph notifications carry no id. An item is identified by its
content (clientState excluded); a message's or event's `@odata.etag` changes
with each change, so two updates of one item stay two events. Items without
an etag (lifecycle notifications) add the DEDUPE_WINDOW_SECONDS bucket they
arrived in, so Graph's retries of one are stored once while a later identical
one (a second "missed") is handled again. Handlers must be idempotent (a
resync is).

Usage (one subclass per notification URL):

    class OutlookMailVerifier(GraphNotificationVerifier):
        provider = "outlook"                       # the inbox's provider name; event types "outlook.<kind>"

        def lookup(self, subscription_id):
            box = Mailbox.objects.filter(subscription_id=subscription_id).first()
            return box and GraphSubscriptionRef([box.client_state], {"connection_id": box.connection_id})

    urlpatterns += [path("webhooks/outlook/", graph_webhook_view(OutlookMailVerifier()))]

    @webhook_handler("outlook", *change_types("outlook"))          # outlook.created / .updated / .deleted
    @webhook_handler("outlook", *lifecycle_types("outlook"))       # outlook.reauthorizationRequired / ...
"""

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .. import locks
from .graph_tokens import validation_tokens_check
from .inbox import error_response, receive_webhook
from .verify import InboundEvent, WebhookRejected, WebhookVerifier, json_body, safe_headers, signatures_match

logger = logging.getLogger(__name__)

CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
CLIENT_STATE_MAX = 128  # Graph refuses a longer clientState
VALIDATION_TOKEN_MAX = 1024
KEPT_HEADERS = ["Content-Type", "User-Agent", "client-request-id", "request-id"]
_KIND = re.compile(r"^[A-Za-z]{1,64}$")


def new_client_state():
    """A fresh clientState for a subscription: 64 URL-safe characters (Graph allows 128). Store it encrypted."""
    return secrets.token_urlsafe(48)


def change_types(prefix):
    return tuple(f"{prefix}.{kind}" for kind in CHANGE_TYPES)


def lifecycle_types(prefix):
    return tuple(f"{prefix}.{kind}" for kind in LIFECYCLE_EVENTS)


def lifecycle_event(event):
    """The lifecycle event of a stored notification ("" for a change notification)."""
    return (event.payload or {}).get("lifecycleEvent") or ""


def subscription_body(*, resource, notification_url, client_state, expires_at, change_type="created,updated,deleted"):
    """The POST /subscriptions body, lifecycle notifications to the same URL (needed past 1 hour of expiry)."""
    return {
        "changeType": change_type,
        "notificationUrl": notification_url,
        "lifecycleNotificationUrl": notification_url,
        "resource": resource,
        "expirationDateTime": expires_at.isoformat(),
        "clientState": client_state,
    }


def subscriptions_to(get, notification_url, *, resource=None):
    """The ids of the subscriptions GET /subscriptions lists whose notifications go to `notification_url` and,
    given `resource`, that watch it (compared as _resource_key says). `get(link)` answers one page of the list,
    read with the caller's own client and token: "/subscriptions" first, then each `@odata.nextLink` Graph gave.

    What the list holds depends on the token (Graph's List subscriptions): with a user's delegated token, what
    this app made for that user; with the app's own token, what it made for itself or for anyone in the tenant.
    Graph answers their clientState null, so which create made one (and with which secret) cannot be told."""
    wanted = _resource_key(resource) if resource is not None else None
    found, link = [], "/subscriptions"
    while link:
        page = get(link)
        found += [
            s["id"]
            for s in page.get("value") or []
            if s.get("notificationUrl") == notification_url
            and (wanted is None or _resource_key(s.get("resource")) == wanted)
        ]
        link = page.get("@odata.nextLink")
    return found


def unrecorded_subscriptions_delete(listed, recorded, delete):
    """Before a subscription is made: delete those of `listed` (subscriptions_to) that no row records.

    Graph's create takes no idempotency key, and one whose answer was lost (a timeout, a dropped connection, a
    process that died mid-call) may have made the subscription: unrecorded, its notifications were refused (no
    clientState to check them against) until it lapsed, and the retry made a second one. It cannot be adopted
    instead: Graph's list answers clientState null, so which attempt's secret it carries is unknown.
    `recorded` is the ids the caller's rows hold among `listed` (any row: another connection's counts), `delete`
    deletes one at Graph, a subscription gone already being done. Returns the ids deleted."""
    known = set(recorded)
    gone = [subscription_id for subscription_id in listed if subscription_id not in known]
    for subscription_id in gone:
        delete(subscription_id)
    return gone


def account_subscribing(conn, *, notification_url, scope="", seconds, wait, provider):
    """Held around a delegated subscription's cleanup (unrecorded_subscriptions_delete), its create and the save of
    its row: one at a time per Microsoft account and per what that cleanup looks at, whichever hub connection runs it.

    Two hub users' connections to one Outlook account subscribe the same resource (the inbox, a calendar), and
    Graph's list answers each one's subscription to the other (one user, one app, clientState null): a cleanup run
    while the other's create was in flight deleted the subscription it was about to record. A lock per row (a
    mailbox, a calendar) does not see the other row. Keyed by the account's address (what
    connections_sharing_account compares), case-folded, else the connection (two told apart only by account_id
    merely wait for each other); by `notification_url`; and by `scope`, what else narrows the cleanup (a
    calendar's id, case-folded as _resource_key compares resources), so one account's calendars still subscribe
    at once. Always taken inside the row's own lock, never around it."""
    ident = "\0".join([conn.provider, conn.account.casefold() or f"#{conn.pk}", notification_url, scope.casefold()])
    return locks.held(
        "graph-account-subscribing",
        hashlib.sha256(ident.encode()).hexdigest()[:32],  # no address in a Redis key
        seconds=seconds,
        wait=wait,
        provider=provider,
        busy="another connection to this Microsoft account is making the same subscription",
        retry_after=wait,
    )


def _resource_key(resource):
    """A subscription's resource as compared: Graph lists one made on "me/..." as "users/{id}/..." (the user the
    token is for; a delegated list holds that user's alone), with or without a leading "/", in any case."""
    parts = (resource or "").strip("/").split("/")
    if parts[0].lower() == "me":
        parts = parts[1:]
    elif parts[0].lower() == "users" and len(parts) > 1:
        parts = parts[2:]
    return "/".join(parts).casefold()


def encryption_certificate(certificate_pem):
    """(encryptionCertificate, encryptionCertificateId) for a subscription with resource data: the X.509
    certificate as base64 DER (public key only) and an id naming it (its SHA-1 thumbprint), so a notification
    says which key decrypts it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode(), "hub-" + cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - Graph's id


def decrypt_resource_data(encrypted, private_key_pem):
    """The resource of a rich notification's `encryptedContent`, as Graph documents it (change notifications
    with resource data): the data key is RSA-OAEP (SHA-1) under our certificate; the data is checked against
    `dataSignature` (HMAC-SHA256 with that key) before it is decrypted (AES-CBC, PKCS7, the IV being the key's
    first 16 bytes). ValueError when any step fails: nothing undecrypted or tampered is ever parsed."""
    from cryptography.hazmat.primitives import hashes, padding, serialization
    from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        private_key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        oaep = asymmetric.OAEP(mgf=asymmetric.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
        key = private_key.decrypt(base64.b64decode(encrypted["dataKey"]), oaep)
        data = base64.b64decode(encrypted["data"])
        expected = base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()
        if not signatures_match(expected, encrypted.get("dataSignature") or ""):
            raise ValueError("dataSignature does not match the data")
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()
        resource = json.loads(plain)
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"undecryptable resource data: {exc}") from exc
    if not isinstance(resource, dict):
        raise ValueError("the resource data is not a JSON object")
    return resource


@dataclass(frozen=True)
class GraphSubscriptionRef:
    """What the hub stored for one subscription: its clientState(s) and what handlers need (merged into payload)."""

    client_states: list
    context: dict = field(default_factory=dict)


def validation_response(token):
    """The handshake answer: the token as sent, text/plain, 200 (a token that cannot be one is 400)."""
    if not token or len(token) > VALIDATION_TOKEN_MAX or not token.isprintable():
        return error_response(400, "invalid_validation_token", "The validationToken is empty, too long or not text.")
    response = HttpResponse(token, content_type="text/plain; charset=utf-8", status=200)
    response["X-Content-Type-Options"] = "nosniff"  # the echo is never rendered as HTML
    return response


def graph_webhook_view(verifier):
    """The view for one Graph notification URL: the validation handshake, else the inbox with `verifier`."""

    @csrf_exempt  # Graph cannot send a CSRF token; clientState authenticates each notification
    def view(request):
        token = request.GET.get("validationToken")
        if token is not None and request.method == "POST":
            return validation_response(token)
        return receive_webhook(request, provider=verifier.provider, verify=verifier)

    view.__name__ = f"{verifier.provider}_graph_webhook"
    return view


class GraphNotificationVerifier(WebhookVerifier):
    """Graph change and lifecycle notifications, each item checked against its subscription's clientState.

    A subclass sets `provider` (the inbox's provider name; also the event type
    prefix unless `type_prefix` is set) and implements
    `lookup(subscription_id) -> GraphSubscriptionRef | None`.
    """

    secret_setting = "MICROSOFT_CLIENT_ID"  # without the hub's Microsoft app no subscription can exist: 503
    signature_header = "clientState"  # named in messages; it is a field of each item, not a header
    content_types = ("application/json",)
    type_prefix = ""
    dedupe_window_seconds = 300

    def lookup(self, subscription_id):
        raise NotImplementedError

    def now(self):
        return time.time()

    def __call__(self, request):
        self.check_envelope(request)
        if not self.secrets():
            raise WebhookRejected(
                503, "webhook_not_configured", f"This webhook is not configured; set {self.secret_setting} on the hub."
            )
        body = json_body(request)
        items = body.get("value")
        if not isinstance(items, list) or not items:
            raise WebhookRejected(400, "malformed_body", "A Graph notification has a non-empty `value` list.")
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("subscriptionId"), str):
                raise WebhookRejected(400, "malformed_body", f"value[{n}] has no subscriptionId.")
            if not isinstance(item.get("clientState"), str) or not item["clientState"]:
                raise WebhookRejected(403, "missing_signature", f"value[{n}] has no clientState.")
        rich = [item for item in items if "encryptedContent" in item]
        if rich:  # resource data: Graph's validation tokens too (graph_tokens)
            validation_tokens_check(body.get("validationTokens"), tenants={item.get("tenantId") for item in rich})
        events, unknown = [], []
        headers = safe_headers(request, KEPT_HEADERS)
        for item in items:
            ref = self.lookup(item["subscriptionId"])
            if ref is None:
                unknown.append(item["subscriptionId"])
                continue
            if not any(s and signatures_match(s, item["clientState"]) for s in ref.client_states):
                raise WebhookRejected(
                    403, "bad_signature", "The clientState does not match the one stored for this subscription."
                )
            events.append(self.event(item, ref, headers))
        if not events:
            raise WebhookRejected(403, "bad_signature", "The notification names no subscription of this hub.")
        if unknown:
            logger.warning(
                "graph notification for unknown subscriptions dropped",
                extra={"provider": self.provider, "subscriptions": sorted(set(unknown))[:10]},
            )
        return events

    def event(self, item, ref, headers):
        kind = item.get("lifecycleEvent") or item.get("changeType")
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise WebhookRejected(400, "malformed_event", "A notification needs a changeType or a lifecycleEvent.")
        payload = {k: v for k, v in item.items() if k != "clientState"}
        return InboundEvent(
            event_id=self.event_id(payload),
            type=f"{self.type_prefix or self.provider}.{kind}",
            payload={**payload, **ref.context},
            headers=headers,
        )

    def event_id(self, payload):
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        data = payload.get("resourceData")
        etag = data.get("@odata.etag") if isinstance(data, dict) else None
        if etag:
            return f"graph:{digest}"
        return f"graph:{digest}:{int(self.now() // self.dedupe_window_seconds)}"
