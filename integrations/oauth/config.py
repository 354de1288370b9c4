"""OAuth providers as data: endpoints, client settings and the scopes each capability needs.

A provider registers one `OAuthProvider` (usually in its settings-free app
code, at import time) and names the adapter class that speaks to it:

    register(OAuthProvider(
        key="webex", provider="webex", label="Webex",
        client_id_setting="WEBEX_CLIENT_ID", client_secret_setting="WEBEX_CLIENT_SECRET",
        authorize_url="https://webexapis.com/v1/authorize",
        token_url="https://webexapis.com/v1/access_token",
        revoke_url="",                                  # none: deleting is local only
        base_scopes=("spark:people_read",),
        capabilities={"meetings": ("meeting:schedules_read", "meeting:schedules_write")},
        adapter="integrations.oauth.providers.oauth2.StandardOAuth2",
    ))

`key` is the URL slug (/api/v1/connections/<key>/start/); `provider` is the
registry name (integrations.registry) under which token calls are logged and
`Connection.provider` is stored. URLs may name settings in braces
("{MICROSOFT_AUTHORITY_HOST}/{MICROSOFT_TENANT}/..."), filled in when used.
"""

import functools
import string
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.module_loading import import_string

from ..errors import DomainError

GMAIL = "https://www.googleapis.com/auth/gmail."
GOOGLE_CALENDAR = "https://www.googleapis.com/auth/calendar."


@dataclass(frozen=True)
class OAuthProvider:
    key: str
    provider: str
    label: str
    client_id_setting: str
    client_secret_setting: str
    authorize_url: str
    token_url: str
    revoke_url: str
    adapter: str
    # Asked for on every authorization (identity: who is this account?).
    base_scopes: tuple = ()
    # capability -> the least scopes that capability needs.
    capabilities: dict = field(default_factory=dict)
    # Scope spellings the provider may report back for a scope we asked for (e.g. Graph's URL prefix).
    scope_prefixes: tuple = ()

    def url(self, name):
        template = getattr(self, f"{name}_url")
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        return template.format(**{n: str(getattr(settings, n, "")).rstrip("/") for n in names})

    @property
    def client_id(self):
        return getattr(settings, self.client_id_setting, "")

    @property
    def client_secret(self):
        return getattr(settings, self.client_secret_setting, "")

    def scopes_for(self, capabilities):
        """The least scopes for these capabilities, base scopes first, each once, in a stable order."""
        scopes = list(self.base_scopes)
        for capability in capabilities:
            for scope in self.capabilities[capability]:
                if scope not in scopes:
                    scopes.append(scope)
        return scopes

    def normalise_scope(self, scope):
        for prefix in self.scope_prefixes:
            if scope.startswith(prefix):
                return scope[len(prefix) :]
        return scope

    def client(self):
        return _adapter(self.adapter)()


@functools.cache
def _adapter(path):
    return import_string(path)


REGISTRY = {}


def register(config):
    """Add (or replace, for tests and reloads) a provider's OAuth configuration."""
    REGISTRY[config.key] = config
    return config


def get(key):
    """The provider's OAuth configuration, or a 404 naming the ones that exist."""
    try:
        return REGISTRY[key]
    except KeyError:
        raise DomainError(
            404,
            "unknown_oauth_provider",
            f"There is no OAuth provider {key!r}; use one of {', '.join(sorted(REGISTRY))}.",
        ) from None


def by_registry_name(provider):
    for config in REGISTRY.values():
        if config.provider == provider:
            return config
    raise LookupError(f"no OAuth configuration for provider {provider!r}")


register(
    OAuthProvider(
        key="google",
        provider="google_oauth",
        label="Google",
        client_id_setting="GOOGLE_CLIENT_ID",
        client_secret_setting="GOOGLE_CLIENT_SECRET",
        authorize_url="https://accounts.google.com/o/oauth2/auth",
        token_url="https://oauth2.googleapis.com/token",
        revoke_url="https://oauth2.googleapis.com/revoke",
        adapter="integrations.oauth.providers.google.GoogleOAuth",
        base_scopes=("openid", "https://www.googleapis.com/auth/userinfo.email"),
        capabilities={
            # gmail.modify reads, labels and archives (it covers gmail.readonly); send, drafts and
            # label management each have their own narrower scope, so a user can decline one.
            "mail": (f"{GMAIL}modify", f"{GMAIL}send", f"{GMAIL}compose", f"{GMAIL}labels"),
            "calendar": (f"{GOOGLE_CALENDAR}events", f"{GOOGLE_CALENDAR}readonly"),
            # Meet links are created as conferenceData on calendar events.
            "meetings": (f"{GOOGLE_CALENDAR}events",),
            # Meet REST API v2: conference records, their recordings and transcripts; and the files themselves,
            # which Meet writes to the organizer's Drive (drive.meet.readonly reaches only the files Meet made).
            "meeting_records": (
                "https://www.googleapis.com/auth/meetings.space.readonly",
                "https://www.googleapis.com/auth/drive.meet.readonly",
            ),
        },
    )
)

register(
    OAuthProvider(
        key="microsoft",
        provider="microsoft_oauth",
        label="Microsoft",
        client_id_setting="MICROSOFT_CLIENT_ID",
        client_secret_setting="MICROSOFT_CLIENT_SECRET",
        authorize_url="{MICROSOFT_AUTHORITY_HOST}/{MICROSOFT_TENANT}/oauth2/v2.0/authorize",
        token_url="{MICROSOFT_AUTHORITY_HOST}/{MICROSOFT_TENANT}/oauth2/v2.0/token",
        # Microsoft identity has no endpoint that revokes one refresh token.
        revoke_url="",
        adapter="integrations.oauth.providers.microsoft.MicrosoftOAuth",
        # msal adds openid, profile and offline_access itself (and refuses them if passed).
        base_scopes=("User.Read",),
        capabilities={
            "mail": ("Mail.ReadWrite", "Mail.Send"),
            "calendar": ("Calendars.ReadWrite",),
            # A Teams meeting is an event with isOnlineMeeting (it sends the invitations); its lobby is the onlineMeeting.
            "meetings": ("OnlineMeetings.ReadWrite", "Calendars.ReadWrite"),
            "meeting_records": ("OnlineMeetingRecording.Read.All", "OnlineMeetingTranscript.Read.All"),
            # Teams attendance reports (who joined and left when; the call's real start and end).
            "meeting_attendance": ("OnlineMeetingArtifact.Read.All",),
        },
        scope_prefixes=("https://graph.microsoft.com/",),
    )
)


# Called with the Connection just before its tokens are revoked and deleted, while they still work
# (mail stops its Gmail watch / deletes its Graph subscription). A failing hook is logged, never blocks the delete.
DISCONNECT_HOOKS = {}


def on_disconnect(fn):
    DISCONNECT_HOOKS[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


# Called with the Connection after it was authorized again (needs_reauth, expired, error or revoked -> active),
# after commit: an app whose background work failed meanwhile catches up (calendars sync what they missed).
RECONNECT_HOOKS = {}


def on_reconnect(fn):
    RECONNECT_HOOKS[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


# Called with the Connection after any completed consent of a connection that already existed, after commit:
# the reconnects above and a re-consent of a connection that stayed active. What the provider refused for the
# owner's grant, consent or licence while the tokens kept working (a Teams licence assigned since, a Google grant
# widened) is tried again when the owner authorizes again; the connection's status never changed, so a reconnect
# hook would not run.
REAUTHORIZE_HOOKS = {}


def on_reauthorize(fn):
    REAUTHORIZE_HOOKS[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn
