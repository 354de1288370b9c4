"""OAuth clients: Google and Microsoft (mail, calendars, meetings share them)."""

from ._env import env
from .celery import CELERY_BEAT_SCHEDULE

# Google (OAuth, Gmail, Calendar, Meet share one OAuth client)
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")

# Microsoft (OAuth, Outlook mail, Calendar, Teams share one app registration)
MICROSOFT_CLIENT_ID = env.str("MICROSOFT_CLIENT_ID", default="")
MICROSOFT_CLIENT_SECRET = env.str("MICROSOFT_CLIENT_SECRET", default="")
MICROSOFT_TENANT = env.str("MICROSOFT_TENANT", default="common")
# Microsoft's identity host; point it at a local identity provider (https only: msal refuses http).
MICROSOFT_AUTHORITY_HOST = env.str("MICROSOFT_AUTHORITY_HOST", default="https://login.microsoftonline.com")
# A CA bundle for the identity providers' TLS (a local identity provider with its own certificate); empty = system CAs.
OAUTH_CA_BUNDLE = env.str("OAUTH_CA_BUNDLE", default="")

# Connections (integrations.oauth)
# An authorization must come back within this many seconds of its start (the state record expires).
OAUTH_STATE_TTL_SECONDS = env.int("OAUTH_STATE_TTL_SECONDS", default=600)
# Before a call, an access token with less than this left is refreshed first.
OAUTH_REFRESH_MARGIN_SECONDS = env.int("OAUTH_REFRESH_MARGIN_SECONDS", default=300)
# The beat sweep refreshes tokens expiring within this many seconds (it runs every 5 minutes).
OAUTH_REFRESH_AHEAD_SECONDS = env.int("OAUTH_REFRESH_AHEAD_SECONDS", default=900)
CELERY_BEAT_SCHEDULE["integrations.oauth_refresh_due"] = {"task": "integrations.oauth_refresh_due", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["integrations.oauth_states_purge"] = {
    "task": "integrations.oauth_states_purge",
    "schedule": 3600.0,
}
