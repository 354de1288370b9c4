"""What each meeting provider can do through the hub (GET /api/v1/scheduling/providers/).

A provider listed as not available has no adapter in the hub yet: asking for it
answers 422 provider_not_available naming it, never a made-up meeting.
"""

ZOOM = frozenset(
    {
        "participants",
        "registrants",
        "breakout_rooms",
        "waiting_room",
        "mute_on_entry",
        "auto_recording",
        "cloud_recordings",
        "lifecycle_webhooks",
    }
)

PROVIDERS = {
    "zoom": {"registry": "zoom", "available": True, "capabilities": ZOOM},
    "google_meet": {"registry": "google_meet", "available": False, "capabilities": frozenset()},
    "teams": {"registry": "teams", "available": False, "capabilities": frozenset()},
    "webex": {"registry": "webex", "available": False, "capabilities": frozenset()},
}

# What a create/update request asks for, by the capability it needs.
REQUESTED = {
    "breakout_rooms": lambda data: bool(data.get("breakout_rooms")),
    "registrants": lambda data: bool((data.get("settings") or {}).get("registration")),
    "waiting_room": lambda data: (data.get("settings") or {}).get("waiting_room") is not None,
    "mute_on_entry": lambda data: (data.get("settings") or {}).get("mute_on_entry") is not None,
    "auto_recording": lambda data: (data.get("settings") or {}).get("auto_recording") not in (None, "none"),
}
