"""Webex as an OAuth provider of the connections flow (registered when the app loads).

Redirect URI to register in the Webex integration: {APP_URL}/api/v1/connections/webex/callback/.
Webex has no endpoint that revokes one grant for an integration, so disconnecting deletes the hub's tokens.
"""

from integrations import oauth

WEBEX_MEETINGS = (
    "meeting:schedules_read",
    "meeting:schedules_write",
    "meeting:recordings_read",
    "meeting:participants_read",
)

WEBEX = oauth.register(
    oauth.OAuthProvider(
        key="webex",
        provider="webex",
        label="Webex",
        client_id_setting="WEBEX_CLIENT_ID",
        client_secret_setting="WEBEX_CLIENT_SECRET",
        authorize_url="{WEBEX_API_BASE}/authorize",
        token_url="{WEBEX_API_BASE}/access_token",
        revoke_url="",
        adapter="scheduling.providers.webex.WebexOAuth",
        # people_read names the account (GET /people/me); spark:kms lets the app use encrypted content
        # (meeting agendas and titles in end-to-end-encrypted orgs).
        base_scopes=("spark:people_read", "spark:kms"),
        capabilities={"meetings": WEBEX_MEETINGS},
    )
)
