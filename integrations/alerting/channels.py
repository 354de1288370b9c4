"""Sending one notice to one channel: email, a Slack-compatible incoming webhook, or a signed webhook.

Each send is one gateway attempt (a ProviderCall: "email" for mail,
"alert_webhook" for both webhook kinds, its scope the channel's key), so a
channel that fails shows in the call log and on the console like any provider;
errors leave as the hub's own (retryable 5xx / 429 / network, permanent 4xx)
and the delivery task retries. Each webhook channel has its own circuit
breaker (`alert_webhook:<channel key>`): one receiver that is down fails fast
without silencing the others.

The generic webhook is signed as Stripe signs its own: header
`X-Hub-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, so a
receiver checks the time (reject anything older than 5 minutes) and the
signature with the shared secret, exactly as it would a Stripe event.
"""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from .. import egress, gateway
from ..errors import error_from_http
from ..providers import ProviderAdapter

PROVIDER = "alert_webhook"
SIGNATURE_HEADER = "X-Hub-Signature"


@dataclass(frozen=True)
class Channel:
    """A destination, from settings or an AlertChannel row, in the shape the senders need."""

    key: str
    name: str
    kind: str  # email | slack | webhook
    target: str
    secret: str = ""
    min_severity: str = "warning"
    kinds: tuple = ()


def sign(secret, body, timestamp=None):
    """The X-Hub-Signature value for `body` (bytes): t=<timestamp>,v1=<hex HMAC-SHA256 of "t.body">."""
    ts = int(timestamp if timestamp is not None else time.time())
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_signature(secret, body, header, *, tolerance=300, now=None):
    """What a receiver does (and what the tests check): True when the header signs `body` recently."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        ts = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance:
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class AlertHookAdapter(ProviderAdapter):
    provider = PROVIDER
    sdk_errors = (httpx.HTTPStatusError,)

    def translate(self, exc):
        response = exc.response
        return error_from_http(
            PROVIDER, response.status_code, headers=dict(response.headers), message=response.text[:300]
        )


HOOKS = AlertHookAdapter()


def circuit(channel):
    """The breaker of one channel (a Channel or an AlertChannel row): each is its own receiver, and one that is
    down must not silence the others."""
    return f"{PROVIDER}:{channel.key}"


def _post(channel, operation, body, headers):
    url = channel.target
    # scope: the call log names the channel, and a receiver's 429 (Retry-After) pauses that channel only (Slack
    # limits each incoming webhook on its own).
    with HOOKS.attempt(operation, scope=channel.key, circuit=circuit(channel)) as call:
        with httpx.Client(transport=egress.transport(trust_env=True)) as client:
            response = client.post(url, content=body, headers=headers, timeout=gateway.timeout_for(PROVIDER))
        call.record(http_status=response.status_code)
        response.raise_for_status()
    return response.status_code


def payload(alert, notice):
    """The JSON a webhook receives (also the facts every other message is written from)."""
    return {
        "notice": notice,
        "alert": {
            "id": alert.pk,
            "kind": alert.kind,
            "severity": alert.severity,
            "provider": alert.provider,
            "message": alert.message,
            "occurrences": alert.occurrences,
            "created_at": alert.created_at.isoformat() if alert.created_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        },
        "hub": settings.ALERT_HUB_NAME,
    }


def headline(alert, notice):
    prefix = {"opened": "ALERT", "reminder": "STILL OPEN", "resolved": "RESOLVED"}[notice]
    where = f" {alert.provider}" if alert.provider else ""
    return f"[{settings.ALERT_HUB_NAME}] {prefix} {alert.severity}{where}: {alert.kind}"


def send(channel, alert, notice):
    """Send one notice; raises the hub's ProviderError on failure (the task decides whether to retry)."""
    if channel.kind == "email":
        from ..email import mail_send

        to = [a.strip() for a in channel.target.split(",") if a.strip()]
        body = f"{alert.message}\n\nOccurrences: {alert.occurrences}\nAlert #{alert.pk} in the hub's admin."
        mail_send(subject=headline(alert, notice)[:200], message=body, to=to, related=alert)
        return
    if channel.kind == "slack":
        text = f"*{headline(alert, notice)}*\n{alert.message}"
        body = json.dumps({"text": text}).encode()
        _post(channel, "slack.post", body, {"Content-Type": "application/json"})
        return
    if channel.kind == "webhook":
        body = json.dumps(payload(alert, notice), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(channel.secret, body)}
        _post(channel, "webhook.post", body, headers)
        return
    raise ValueError(f"unknown alert channel kind {channel.kind!r}")
