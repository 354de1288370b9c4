"""Sentry, opt-in: errors of the web tier and the workers, without personal data or secrets.

Called from the settings when SENTRY_DSN is set. `send_default_pii=False`
keeps user ids, IP addresses, cookies and request bodies out; `scrub_event`
then redacts whatever still looks like a credential (a configured secret
value, an Authorization header, a token in an exception message or a local
variable) before anything leaves the process.
"""

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

# Keys whose values never leave the process, wherever they appear in an event.
_SECRET_KEYS = (
    "authorization",
    "cookie",
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "signature",
    "session",
    "csrf",
    "dsn",
    "private",
)
REDACTED = "[redacted]"


def _secret_key(name):
    lowered = str(name).lower().replace("-", "_")
    return any(word in lowered for word in _SECRET_KEYS)


def _scrub(value, depth=0):
    if depth > 12:
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _secret_key(k) else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, str):
        from integrations.redaction import redact

        return redact(value, limit=8192)
    return value


def scrub_event(event, hint=None):
    """Sentry's before_send / before_send_transaction: the same event, every credential redacted."""
    return _scrub(event)


def sentry_init(*, dsn, environment, traces_sample_rate=0.0, transport=None):
    options = {
        "dsn": dsn,
        "environment": environment,
        "integrations": [DjangoIntegration(), CeleryIntegration()],
        "send_default_pii": False,
        "traces_sample_rate": traces_sample_rate,
        "before_send": scrub_event,
        "before_send_transaction": scrub_event,
        # Local variables hold message bodies, prompts and tokens: personal data we never send.
        "include_local_variables": False,
        "max_request_body_size": "never",
    }
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
