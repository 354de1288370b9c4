"""Meeting providers' webhooks (found by the inbox's autodiscovery of `<app>.webhooks`): Zoom and Webex.

Google Meet and Teams send no meeting lifecycle webhooks to a delegated app
(Google's Workspace Events API and Graph's meetingCallEvents need Pub/Sub or
application permissions); their recordings are read on demand.
"""

from . import webex, zoom
from .zoom import zoom_webhook

__all__ = ["webex", "zoom", "zoom_webhook"]
