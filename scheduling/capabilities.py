"""What each meeting provider can do through the hub (GET /api/v1/scheduling/providers/).

A capability a provider lacks answers 422 unsupported_by_provider naming it,
before anything reaches the provider. `needs_grant` names capabilities that
depend on what the user's connection was granted (the OAuth capability to add):
without it the hub answers 403 missing_scope naming the scopes, never a guess.
"""

ZOOM = frozenset(
    {
        "participants",
        "registrants",
        "breakout_rooms",
        "waiting_room",
        "mute_on_entry",
        "auto_recording",
        "local_recording",
        "cloud_recordings",
        "lifecycle_webhooks",
    }
)
# Calendar API conferenceData: a Meet link on an event with attendees. Breakout rooms, the lobby, muting and
# auto-recording are not settable through Google's APIs. Lifecycle events come from a Workspace Events
# subscription per space (scheduling.meet_events): they need the grant and the hub's Pub/Sub settings.
GOOGLE_MEET = frozenset({"participants", "cloud_recordings", "transcripts", "lifecycle_webhooks"})
# Graph: event attendees; the onlineMeeting's lobbyBypassSettings and recordAutomatically. Breakout rooms and
# mute-on-entry have no Graph API.
# Lifecycle (scheduling.teams_lifecycle): Graph notifies a delegated app of a meeting's recordings and transcripts
# (recording_webhooks); who joined and left, and the call's real start and end, come from its attendance report
# after the call (attendance). Live call events are Graph's meetingCallEvents: application permission only.
TEAMS = frozenset(
    {
        "participants",
        "waiting_room",
        "auto_recording",
        "cloud_recordings",
        "transcripts",
        "recording_webhooks",
        "attendance",
    }
)
WEBEX = frozenset(
    {
        "participants",
        "breakout_rooms",
        "waiting_room",
        "mute_on_entry",
        "auto_recording",
        "cloud_recordings",
        "lifecycle_webhooks",
    }
)

PROVIDERS = {
    "zoom": {"registry": "zoom", "available": True, "capabilities": ZOOM, "oauth": None, "needs_grant": {}},
    "google_meet": {
        "registry": "google_meet",
        "available": True,
        "capabilities": GOOGLE_MEET,
        "oauth": "google_oauth",
        "needs_grant": {
            "cloud_recordings": "meeting_records",
            "transcripts": "meeting_records",
            "lifecycle_webhooks": "meeting_records",
        },
    },
    "teams": {
        "registry": "teams",
        "available": True,
        "capabilities": TEAMS,
        "oauth": "microsoft_oauth",
        "needs_grant": {
            "cloud_recordings": "meeting_records",
            "transcripts": "meeting_records",
            "recording_webhooks": "meeting_records",
            "attendance": "meeting_attendance",
        },
    },
    "webex": {"registry": "webex", "available": True, "capabilities": WEBEX, "oauth": "webex", "needs_grant": {}},
}

# Capabilities that also need settings of the hub's own (beyond the provider's registry entry). Until they are
# all set the capability is not offered: the providers endpoint lists it under `not_configured` with the settings
# still missing, so nothing is claimed that cannot work.
# - Zoom and Webex lifecycle events: every delivery is verified with the webhook secret (POST /webhooks/zoom/ and
#   /webex/ refuse them all without it, 503), and Webex's per-user webhooks are registered only with it.
# - Google Meet lifecycle events: a Workspace Events subscription per space pushes through the hub's Pub/Sub topic.
# - Teams live call events (started/ended, joined/left as they happen) are Graph's meetingCallEvents: application
#   permission OnlineMeetings.Read.All with admin consent in one tenant, and a certificate Graph encrypts them to.
#   Without them attendance and the real start and end come from the attendance report after the call.
NEEDS_SETTINGS = {
    "zoom": {"lifecycle_webhooks": ("ZOOM_WEBHOOK_SECRET_TOKEN",)},
    "webex": {"lifecycle_webhooks": ("WEBEX_WEBHOOK_SECRET",)},
    "google_meet": {
        "lifecycle_webhooks": (
            "GOOGLE_MEET_EVENTS_TOPIC",
            "GOOGLE_MEET_PUSH_AUDIENCE",
            "GOOGLE_MEET_PUSH_SERVICE_ACCOUNT",
        ),
    },
    "teams": {
        "lifecycle_webhooks": (
            "MICROSOFT_APP_TENANT_ID",
            "TEAMS_CALL_EVENTS_CERTIFICATE",
            "TEAMS_CALL_EVENTS_PRIVATE_KEY",
        ),
    },
}


def not_configured(provider):
    """{capability: [missing settings]} for the provider's capabilities that the hub's settings do not enable yet."""
    from django.conf import settings

    missing = {}
    for capability, names in NEEDS_SETTINGS.get(provider, {}).items():
        absent = [name for name in names if not getattr(settings, name, "")]
        if absent:
            missing[capability] = absent
    return missing


def offered(provider):
    """The provider's capabilities through the hub as configured now."""
    found = set(PROVIDERS[provider]["capabilities"]) | set(NEEDS_SETTINGS.get(provider, {}))
    return found - set(not_configured(provider))


# What a create/update request asks for, by the capability it needs.
REQUESTED = {
    "breakout_rooms": lambda data: bool(data.get("breakout_rooms")),
    "registrants": lambda data: bool((data.get("settings") or {}).get("registration")),
    "waiting_room": lambda data: (data.get("settings") or {}).get("waiting_room") is not None,
    "mute_on_entry": lambda data: (data.get("settings") or {}).get("mute_on_entry") is not None,
    "auto_recording": lambda data: (data.get("settings") or {}).get("auto_recording") not in (None, "none"),
    # Recording to the host's own computer is Zoom's alone; the others record to their cloud.
    "local_recording": lambda data: (data.get("settings") or {}).get("auto_recording") == "local",
}
