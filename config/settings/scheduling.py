"""Video meetings (Zoom, Webex; Meet and Teams ride on the Google and Microsoft OAuth clients)."""

from ._env import env

# Video
ZOOM_ACCOUNT_ID = env.str("ZOOM_ACCOUNT_ID", default="")
ZOOM_CLIENT_ID = env.str("ZOOM_CLIENT_ID", default="")
ZOOM_CLIENT_SECRET = env.str("ZOOM_CLIENT_SECRET", default="")
WEBEX_CLIENT_ID = env.str("WEBEX_CLIENT_ID", default="")
WEBEX_CLIENT_SECRET = env.str("WEBEX_CLIENT_SECRET", default="")
