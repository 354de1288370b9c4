"""Token-endpoint calls (msal over the hub's requests session) follow the egress rule (integrations.egress):
through the proxy the environment names (a CONNECT tunnel to the https identity provider, whose certificate
OAUTH_CA_BUNDLE still names), direct when NO_PROXY exempts the host (`egress_route` runs the test both ways)."""

import pytest

from integrations import oauth

from .test_refresh import RotatingTokenEndpoint, ms_connection

pytestmark = pytest.mark.django_db


def test_a_microsoft_token_refresh_follows_the_egress_rule(idp, user, egress_route):
    conn = ms_connection(user, expires_in=30)
    idp.token_responses = [RotatingTokenEndpoint("M.R_0")]

    assert oauth.access_token(connection=conn) == "access-1"

    egress_route.check(idp.base)
    assert egress_route.exempt or {method for method, _ in egress_route.proxy.seen} == {"CONNECT"}
