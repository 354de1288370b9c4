"""Video meetings (Zoom, Webex; Meet and Teams ride on the Google and Microsoft OAuth clients)."""

from ._env import env, provider_defaults
from .celery import CELERY_BEAT_SCHEDULE

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

# --- Availability (scheduling.availability) ---------------------------------
# Google Calendar API base with its service path ("" = https://www.googleapis.com/calendar/v3/), for an emulator.
GOOGLE_CALENDAR_API_BASE = env.str("GOOGLE_CALENDAR_API_BASE", default="")
# Free/busy answers are cached per connection and window this long (a calendar push drops them sooner).
AVAILABILITY_CACHE_SECONDS = env.int("AVAILABILITY_CACHE_SECONDS", default=45)
# Free/busy requests in flight at once for one availability question.
AVAILABILITY_CONCURRENCY = env.int("AVAILABILITY_CONCURRENCY", default=8)
# The longest window one question may span (Graph's getSchedule takes less than 42 days).
AVAILABILITY_MAX_WINDOW_DAYS = env.int("AVAILABILITY_MAX_WINDOW_DAYS", default=31)
AVAILABILITY_MAX_USERS = env.int("AVAILABILITY_MAX_USERS", default=20)
# How long a question may wait for an outbound rate token before answering 503 with Retry-After.
AVAILABILITY_RATE_WAIT_SECONDS = env.float("AVAILABILITY_RATE_WAIT_SECONDS", default=1.0)
# Webex: an OAuth integration (developer.webex.com -> My Webex Apps -> Create an Integration); users connect
# their own Webex account through /api/v1/connections/webex/start/.
WEBEX_API_BASE = env.str("WEBEX_API_BASE", default="https://webexapis.com/v1").rstrip("/")
# The secret the hub gives Webex when it registers its webhooks; Webex signs each delivery with it
# (X-Spark-Signature, HMAC-SHA1 of the body). Comma-separated while a rotation overlaps (newest first).
WEBEX_WEBHOOK_SECRET = env.str("WEBEX_WEBHOOK_SECRET", default="")

# Google Meet and Teams ride on the Google and Microsoft OAuth connections (config/settings/oauth.py); Meet's
# Calendar calls use GOOGLE_CALENDAR_API_BASE above. Meet REST API base with its path ("" = Google's), for an emulator.
GOOGLE_MEET_API_BASE = env.str("GOOGLE_MEET_API_BASE", default="")
# Drive API root with its path ("" = https://www.googleapis.com/drive/v3), where Meet recordings and transcripts
# are downloaded from; only to point the hub at an emulator.
GOOGLE_DRIVE_API_BASE = env.str("GOOGLE_DRIVE_API_BASE", default="")

provider_defaults(
    RATE_LIMITS={
        # Calendar API: 600 requests per minute per user by default.
        "google_meet": {"requests": {"rate": 10, "burst": 20}},
        # Graph: the calendar/onlineMeetings budget of a mailbox is the same as mail's (4 concurrent, 10k per 10 min).
        "teams": {"requests": {"rate": 4, "burst": 10}},
    }
)

# --- Calendars (scheduling.calendars) -----------------------------------------
# Signs the token of every Google Calendar push channel (X-Goog-Channel-Token = HMAC of the channel id).
# Comma-separated while a rotation overlaps (newest first); channels are renewed daily, so after a day
# the old secret can go.
GOOGLE_CALENDAR_CHANNEL_SECRET = env.str("GOOGLE_CALENDAR_CHANNEL_SECRET", default="")
# Start push by itself for each newly listed calendar (only when APP_URL is HTTPS, and for Google with the
# channel secret set); otherwise POST /api/v1/calendars/{id}/watch/ turns it on.
CALENDAR_PUSH_AUTO = env.bool("CALENDAR_PUSH_AUTO", default=True)
# Lifetime asked of a Google channel (Google may grant less) and of a Graph subscription on events
# (Graph allows under 3 days for events: 4230 minutes).
CALENDAR_WATCH_TTL_SECONDS = env.int("CALENDAR_WATCH_TTL_SECONDS", default=7 * 24 * 3600)
CALENDAR_GRAPH_SUBSCRIPTION_MINUTES = env.int("CALENDAR_GRAPH_SUBSCRIPTION_MINUTES", default=4200)
# Channels and subscriptions that end within this many hours are renewed by the hourly beat.
CALENDAR_WATCH_RENEW_BEFORE_HOURS = env.int("CALENDAR_WATCH_RENEW_BEFORE_HOURS", default=24)
# Graph delta reads a window of the calendar (calendarView): this many days back and ahead of the first sync.
CALENDAR_GRAPH_WINDOW_DAYS_BACK = env.int("CALENDAR_GRAPH_WINDOW_DAYS_BACK", default=30)
CALENDAR_GRAPH_WINDOW_DAYS_AHEAD = env.int("CALENDAR_GRAPH_WINDOW_DAYS_AHEAD", default=365)
# A delta keeps its first window for good: the hourly beat starts a fresh one (a full read of the window) when the
# last is this many days old, so the window always reaches at least DAYS_AHEAD minus this into the future.
CALENDAR_GRAPH_WINDOW_RENEW_DAYS = env.int("CALENDAR_GRAPH_WINDOW_RENEW_DAYS", default=30)

CELERY_BEAT_SCHEDULE["scheduling.calendar_watch_renew_due"] = {
    "task": "scheduling.calendar_watch_renew_due",
    "schedule": 3600.0,
}

# --- Google Meet lifecycle events (scheduling.meet_events) ---------------------
# Workspace Events API subscriptions on each Meet space publish to this Pub/Sub topic
# (projects/<project>/topics/<topic>; meet-api-event-push@system.gserviceaccount.com must be a publisher).
# Its push subscription POSTs to APP_URL/webhooks/google-meet/ with an OIDC token for this audience,
# signed for this service account. Without all three, Meet meetings have no lifecycle events (the providers
# endpoint says which are missing).
GOOGLE_MEET_EVENTS_TOPIC = env.str("GOOGLE_MEET_EVENTS_TOPIC", default="")
GOOGLE_MEET_PUSH_AUDIENCE = env.str("GOOGLE_MEET_PUSH_AUDIENCE", default="")
GOOGLE_MEET_PUSH_SERVICE_ACCOUNT = env.str("GOOGLE_MEET_PUSH_SERVICE_ACCOUNT", default="")
# Workspace Events API root ("" = https://workspaceevents.googleapis.com/), for an emulator.
GOOGLE_WORKSPACE_EVENTS_API_BASE = env.str("GOOGLE_WORKSPACE_EVENTS_API_BASE", default="")
# Subscriptions that end within this many hours are renewed by the hourly beat, while the meeting can still
# produce events: until it is cancelled, or this many hours after its scheduled end (recordings and
# transcripts are generated after the conference ends).
GOOGLE_MEET_SUBSCRIPTION_RENEW_BEFORE_HOURS = env.int("GOOGLE_MEET_SUBSCRIPTION_RENEW_BEFORE_HOURS", default=24)
GOOGLE_MEET_EVENTS_AFTER_END_HOURS = env.int("GOOGLE_MEET_EVENTS_AFTER_END_HOURS", default=48)

# One hourly upkeep of every meeting lifecycle subscription (Google Meet's and Teams'; scheduling.tasks).
CELERY_BEAT_SCHEDULE["scheduling.meeting_subscriptions_due"] = {
    "task": "scheduling.meeting_subscriptions_due",
    "schedule": 3600.0,
}
