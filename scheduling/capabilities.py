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
# auto-recording are not settable through Google's APIs.
GOOGLE_MEET = frozenset({"participants", "cloud_recordings", "transcripts"})
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
        "needs_grant": {"cloud_recordings": "meeting_records", "transcripts": "meeting_records"},
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

# What live Teams call events need (scheduling.teams_lifecycle); the hub offers them only once configured.
TEAMS_CALL_EVENTS_NEED = (
    "Live call started/ended and participant joined/left events are Graph's meetingCallEvents notifications: "
    "application permission OnlineMeetings.Read.All with admin consent in one tenant (MICROSOFT_APP_TENANT_ID), "
    "and a certificate Graph encrypts them to (TEAMS_CALL_EVENTS_CERTIFICATE, TEAMS_CALL_EVENTS_PRIVATE_KEY). "
    "Without them attendance and the real start and end are read from the attendance report after the call "
    "(capability 'attendance')."
)


def unavailable(provider):
    """Capabilities the provider has that the hub does not offer as configured: {capability: what it needs}."""
    if provider == "teams":
        from .teams_lifecycle import call_events_missing

        missing = call_events_missing()
        if missing:
            return {"lifecycle_webhooks": f"{TEAMS_CALL_EVENTS_NEED} Not set: {', '.join(missing)}."}
    return {}


def offered(provider):
    """The provider's capabilities through the hub as configured now."""
    found = set(PROVIDERS[provider]["capabilities"])
    if provider == "teams" and not unavailable(provider):
        found.add("lifecycle_webhooks")  # for organizers in MICROSOFT_APP_TENANT_ID
    return found
