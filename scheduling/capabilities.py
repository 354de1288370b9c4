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
TEAMS = frozenset({"participants", "waiting_room", "auto_recording", "cloud_recordings", "transcripts"})
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
        "needs_grant": {"cloud_recordings": "meeting_records", "transcripts": "meeting_records"},
    },
    "webex": {"registry": "webex", "available": True, "capabilities": WEBEX, "oauth": "webex", "needs_grant": {}},
}

# Capabilities that also need settings of the hub's own (beyond the provider's registry entry): the providers
# endpoint lists those still missing under `not_configured`, so nothing is claimed that cannot work.
NEEDS_SETTINGS = {
    "google_meet": {
        "lifecycle_webhooks": (
            "GOOGLE_MEET_EVENTS_TOPIC",
            "GOOGLE_MEET_PUSH_AUDIENCE",
            "GOOGLE_MEET_PUSH_SERVICE_ACCOUNT",
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
