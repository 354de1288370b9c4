"""Which provider and OAuth connection a meeting is made on, checked before any provider is called."""

from integrations import oauth, registry
from integrations.errors import DomainError
from integrations.models import Connection
from integrations.oauth.config import by_registry_name
from integrations.timezones import zone_or_none

from .. import capabilities


def _check_provider(provider, data):
    spec = capabilities.PROVIDERS.get(provider)
    if spec is None:
        raise DomainError(400, "unknown_provider", f"Unknown meeting provider {provider!r}.")
    if not spec["available"]:
        raise DomainError(
            422,
            "provider_not_available",
            f"{provider} meetings are not available through the hub yet; use one of "
            f"{', '.join(p for p, s in capabilities.PROVIDERS.items() if s['available'])}.",
            provider=provider,
        )
    registry.require(spec["registry"])
    for capability, asked in capabilities.REQUESTED.items():
        if asked(data) and capability not in spec["capabilities"]:
            raise DomainError(
                422,
                "unsupported_by_provider",
                f"{provider} does not support {capability.replace('_', ' ')} through its API.",
                provider=provider,
                capability=capability,
            )


def _zone(name):
    found = zone_or_none(name)
    if found is None:
        raise DomainError(400, "invalid", f"time_zone: unknown IANA time zone {name!r}.", field="time_zone")
    return found


def _connection(*, owner, provider, connection_id, capability="meetings"):
    """The owner's OAuth connection a provider's meeting is made on (None for Zoom, which uses the hub's account).

    Without `connection_id` the owner's one connection of that provider with the capability is used; none or
    several is a 400 naming `connection`. Another user's connection is 404 (oauth.connection_for).
    """
    oauth_provider = capabilities.PROVIDERS[provider]["oauth"]
    if oauth_provider is None:
        if connection_id is not None:
            raise DomainError(
                400, "invalid", f"connection: {provider} meetings use the hub's own account.", field="connection"
            )
        return None
    cfg = by_registry_name(oauth_provider)
    if connection_id is None:
        candidates = [
            c.pk
            for c in Connection.objects.filter(owner=owner, provider=oauth_provider).order_by("pk")
            if capability in (c.capabilities or [])
        ]
        if not candidates:
            raise DomainError(
                400,
                "invalid",
                f"connection: connect a {cfg.label} account with the {capability!r} capability first "
                f"(POST /api/v1/connections/{cfg.key}/start/).",
                field="connection",
            )
        if len(candidates) > 1:
            raise DomainError(
                400,
                "invalid",
                f"connection: you have {len(candidates)} {cfg.label} connections; name one ({candidates}).",
                field="connection",
            )
        connection_id = candidates[0]
    conn = oauth.connection_for(owner=owner, connection_id=connection_id, capability=capability)
    if conn.provider != oauth_provider:
        raise DomainError(
            400, "invalid", f"connection: {connection_id} is not a {cfg.label} connection.", field="connection"
        )
    return conn


def _calendar_connection(*, owner, provider, ref):
    """The Google/Microsoft connection of the calendar event a Zoom or Webex meeting attaches to (None: none)."""
    if not ref:
        return None
    if capabilities.PROVIDERS[provider]["oauth"] in ("google_oauth", "microsoft_oauth"):
        raise DomainError(
            400,
            "invalid",
            f"calendar_event: a {provider} meeting is a calendar event itself; attach only Zoom or Webex meetings.",
            field="calendar_event",
        )
    conn = oauth.connection_for(owner=owner, connection_id=ref["connection"], capability="calendar")
    if conn.provider not in ("google_oauth", "microsoft_oauth"):
        raise DomainError(
            400, "invalid", "calendar_event: the connection must be a Google or Microsoft one.", field="calendar_event"
        )
    return conn


def _meeting_connection(meeting, capability="meetings", need=None):
    if capabilities.PROVIDERS[meeting.provider]["oauth"] is None:
        return None
    if meeting.connection_id is None:
        raise DomainError(
            409,
            "connection_gone",
            f"The {meeting.provider} connection this meeting was made on was removed; "
            "connect the account again and manage the meeting at the provider.",
        )
    return oauth.connection_for(
        owner=meeting.owner, connection_id=meeting.connection_id, capability=capability, need=need
    )
