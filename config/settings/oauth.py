"""OAuth clients: Google and Microsoft (mail, calendars, meetings share them)."""

from ._env import env

# Google (OAuth, Gmail, Calendar, Meet share one OAuth client)
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")

# Microsoft (OAuth, Outlook mail, Calendar, Teams share one app registration)
MICROSOFT_CLIENT_ID = env.str("MICROSOFT_CLIENT_ID", default="")
MICROSOFT_CLIENT_SECRET = env.str("MICROSOFT_CLIENT_SECRET", default="")
MICROSOFT_TENANT = env.str("MICROSOFT_TENANT", default="common")
