"""Mail over Gmail and Outlook (messaging.mail): endpoints, push, quotas, limits."""

from django.core.exceptions import ImproperlyConfigured

from ._env import env, provider_defaults
from .celery import CELERY_BEAT_SCHEDULE

# API bases: empty = the providers' own; point them at local emulators.
GMAIL_API_BASE = env.str("GMAIL_API_BASE", default="")
GRAPH_API_BASE = env.str("GRAPH_API_BASE", default="https://graph.microsoft.com/v1.0")

# Gmail push: users.watch publishes to this Pub/Sub topic (projects/<project>/topics/<topic>); its push
# subscription POSTs to APP_URL/webhooks/gmail/ with an OIDC token for this audience, signed for this service account.
GMAIL_PUBSUB_TOPIC = env.str("GMAIL_PUBSUB_TOPIC", default="")
GMAIL_PUSH_AUDIENCE = env.str("GMAIL_PUSH_AUDIENCE", default="")
GMAIL_PUSH_SERVICE_ACCOUNT = env.str("GMAIL_PUSH_SERVICE_ACCOUNT", default="")
# Where Google publishes the keys that sign those tokens (a local emulator can serve its own).
GOOGLE_OIDC_CERTS_URL = env.str("GOOGLE_OIDC_CERTS_URL", default="https://www.googleapis.com/oauth2/v1/certs")
# Graph subscriptions on the inbox last at most 10080 minutes for messages; renewed a day before they end.
GRAPH_SUBSCRIPTION_MINUTES = env.int("GRAPH_SUBSCRIPTION_MINUTES", default=4200)
# Graph allows 4 concurrent requests per app per mailbox.
GRAPH_MAILBOX_CONCURRENCY = env.int("GRAPH_MAILBOX_CONCURRENCY", default=4)

# The list endpoint reads the local cache when push synced it within this many seconds.
MAIL_CACHE_FRESH_SECONDS = env.int("MAIL_CACHE_FRESH_SECONDS", default=600)
# A full resync (first sync, or Gmail history gone) caches this many newest messages.
MAIL_FULL_SYNC_MESSAGES = env.int("MAIL_FULL_SYNC_MESSAGES", default=200)
# Outlook's sendMail (a connection without Mail.ReadWrite) answers no id, and Graph files the sent copy in Sent
# Items a while after accepting it. A retry of a send whose outcome is unknown that finds no copy within this many
# seconds of that attempt answers 503 with Retry-After instead of sending a second time (messaging.mail.services).
OUTLOOK_SENT_COPY_WAIT_SECONDS = env.int("OUTLOOK_SENT_COPY_WAIT_SECONDS", default=120)
# Attachments per message, in bytes, refused with 413 before anything is uploaded. Gmail: 35 MB for the
# whole message as sent (files are base64 inside the MIME, so about 25 MB of files). Outlook: 150 MB (a
# tenant's MaxSendSize may be lower; 35 MB is Exchange Online's default). JSON bodies are capped by
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): larger files are sent as multipart form files.
MAIL_MAX_ATTACHMENT_BYTES = {
    "gmail": env.int("GMAIL_MAX_ATTACHMENT_BYTES", default=35 * 1024 * 1024),
    "outlook": env.int("OUTLOOK_MAX_ATTACHMENT_BYTES", default=150 * 1024 * 1024),
}
# Gmail: a message above this goes up through the media upload endpoint as a resumable upload, in chunks
# (a multiple of 256 KiB) instead of base64 in a JSON body.
GMAIL_RESUMABLE_UPLOAD_BYTES = env.int("GMAIL_RESUMABLE_UPLOAD_BYTES", default=5 * 1024 * 1024)
GMAIL_UPLOAD_CHUNK_BYTES = env.int("GMAIL_UPLOAD_CHUNK_BYTES", default=8 * 1024 * 1024)
# Graph: files adding up to this travel inside the MIME (a Graph request carries at most 4 MB, MIME is
# base64); above it each file is added to the draft, those above this size by an upload session in chunks
# of GRAPH_UPLOAD_CHUNK_BYTES (a multiple of 320 KiB, under 4 MB).
GRAPH_INLINE_ATTACHMENT_BYTES = env.int("GRAPH_INLINE_ATTACHMENT_BYTES", default=3 * 1024 * 1024)
GRAPH_UPLOAD_CHUNK_BYTES = env.int("GRAPH_UPLOAD_CHUNK_BYTES", default=12 * 320 * 1024)
if GRAPH_UPLOAD_CHUNK_BYTES % (320 * 1024) or not 0 < GRAPH_UPLOAD_CHUNK_BYTES < 4 * 1024 * 1024:
    raise ImproperlyConfigured("GRAPH_UPLOAD_CHUNK_BYTES must be a multiple of 320 KiB (327680) below 4 MB.")
if GMAIL_UPLOAD_CHUNK_BYTES % (256 * 1024) or GMAIL_UPLOAD_CHUNK_BYTES <= 0:
    raise ImproperlyConfigured("GMAIL_UPLOAD_CHUNK_BYTES must be a multiple of 256 KiB (262144).")

provider_defaults(
    RATE_LIMITS={
        # Gmail: 250 quota units per user per second (each method costs its units; a batch the sum of its parts).
        # The burst of 300 lets one page (a list, 5 units, and a batch of 50 gets, 250) go at once; Gmail
        # allows short bursts above the per-second average. "project" is the per-project daily budget.
        "gmail": {
            "requests": {"rate": 250, "burst": 300},
            "scopes": {"project": {"requests": {"rate": 1_000_000_000 / 86400, "burst": 1_000_000}}},
        },
        # Graph: 10,000 requests per 10 minutes per app per mailbox; concurrency (4) is limited separately.
        "outlook": {"requests": {"rate": 16, "burst": 40}},
    }
)

CELERY_BEAT_SCHEDULE["mail.watch_renew_due"] = {"task": "mail.watch_renew_due", "schedule": 3600.0}
