"""Video meetings (Zoom, Webex; Meet and Teams ride on the Google and Microsoft OAuth clients)."""

from ._env import env

# Zoom: a Server-to-Server OAuth app (Zoom App Marketplace -> Develop -> Server-to-Server OAuth).
ZOOM_ACCOUNT_ID = env.str("ZOOM_ACCOUNT_ID", default="")
ZOOM_CLIENT_ID = env.str("ZOOM_CLIENT_ID", default="")
ZOOM_CLIENT_SECRET = env.str("ZOOM_CLIENT_SECRET", default="")
# The app's Event Subscriptions "Secret Token": signs webhooks (x-zm-signature) and answers the URL validation.
ZOOM_WEBHOOK_SECRET_TOKEN = env.str("ZOOM_WEBHOOK_SECRET_TOKEN", default="")
ZOOM_API_BASE = env.str("ZOOM_API_BASE", default="https://api.zoom.us/v2").rstrip("/")
ZOOM_OAUTH_TOKEN_URL = env.str("ZOOM_OAUTH_TOKEN_URL", default="https://zoom.us/oauth/token")
# Webhooks older than this (x-zm-request-timestamp) are refused as replays.
ZOOM_WEBHOOK_TOLERANCE_SECONDS = env.int("ZOOM_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Hub links to recordings stop working after this many seconds.
MEETING_RECORDING_LINK_TTL_SECONDS = env.int("MEETING_RECORDING_LINK_TTL_SECONDS", default=300)

WEBEX_CLIENT_ID = env.str("WEBEX_CLIENT_ID", default="")
WEBEX_CLIENT_SECRET = env.str("WEBEX_CLIENT_SECRET", default="")
