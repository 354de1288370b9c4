"""Teams meeting lifecycle (scheduling.teams_lifecycle): Graph subscriptions on each meeting's recordings and
transcripts, with the organizer's delegated Microsoft connection (MICROSOFT_CLIENT_ID, config/settings/oauth.py).
Subscriptions are made only when APP_URL is HTTPS (Graph delivers nowhere else)."""

import uuid

from django.core.exceptions import ImproperlyConfigured

from ._env import env

# Lifetime asked of each subscription (Graph allows under 3 days for Teams recordings and transcripts).
TEAMS_SUBSCRIPTION_MINUTES = env.int("TEAMS_SUBSCRIPTION_MINUTES", default=4200)
# Subscriptions that lapse within this many hours are renewed by the hourly beat...
TEAMS_SUBSCRIPTION_RENEW_BEFORE_HOURS = env.int("TEAMS_SUBSCRIPTION_RENEW_BEFORE_HOURS", default=24)
# ...while their meeting may still produce a recording or transcript: until this many hours after it ended
# (or was due to end). Then they lapse and the meeting's attendance report is read one last time.
TEAMS_LISTEN_AFTER_END_HOURS = env.int("TEAMS_LISTEN_AFTER_END_HOURS", default=48)

# Live call events (started / ended / joined / left) are Graph's meetingCallEvents notifications: an application
# permission (OnlineMeetings.Read.All, admin consent) in one named tenant, and rich notifications encrypted to
# the hub's certificate (Graph sends nothing useful without). All three set = on for organizers in that tenant.
# The directory (tenant) id, a GUID: "common" / "organizations" cannot issue an app-only token.
MICROSOFT_APP_TENANT_ID = env.str("MICROSOFT_APP_TENANT_ID", default="").strip()
# PEM X.509 certificate (RSA 2048-4096, self-signed is fine; Graph encrypts to its public key) and its private key
# (a secret: prefer TEAMS_CALL_EVENTS_PRIVATE_KEY_FILE). Newlines may be written as \n.
TEAMS_CALL_EVENTS_CERTIFICATE = env.str("TEAMS_CALL_EVENTS_CERTIFICATE", default="", multiline=True).strip()
TEAMS_CALL_EVENTS_PRIVATE_KEY = env.str("TEAMS_CALL_EVENTS_PRIVATE_KEY", default="", multiline=True).strip()

if MICROSOFT_APP_TENANT_ID:
    try:
        uuid.UUID(MICROSOFT_APP_TENANT_ID)
    except ValueError:
        raise ImproperlyConfigured(
            f"MICROSOFT_APP_TENANT_ID must be the directory (tenant) id, a GUID; got {MICROSOFT_APP_TENANT_ID!r} "
            "(common / organizations / a domain cannot issue the app-only token live call events need)."
        ) from None


def _check_pem(name, value, load):
    if not value:
        return
    try:
        load(value.encode())
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name} is not a PEM {load.__name__.split('_', 2)[-1]}: {exc}") from None


if TEAMS_CALL_EVENTS_CERTIFICATE or TEAMS_CALL_EVENTS_PRIVATE_KEY:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    _check_pem("TEAMS_CALL_EVENTS_CERTIFICATE", TEAMS_CALL_EVENTS_CERTIFICATE, x509.load_pem_x509_certificate)
    _check_pem(
        "TEAMS_CALL_EVENTS_PRIVATE_KEY",
        TEAMS_CALL_EVENTS_PRIVATE_KEY,
        lambda data: serialization.load_pem_private_key(data, password=None),
    )
