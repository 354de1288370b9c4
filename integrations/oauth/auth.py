import httpx


class BearerAuth(httpx.Auth):
    """Authorization: Bearer <the connection's access token>, refreshed through the hub when due.

    The token is looked up per request (cheap: a refresh happens only when
    fewer than OAUTH_REFRESH_MARGIN_SECONDS remain), so a long sync never sends
    an expired token. A 401 to a token with time left (revoked early, rotated)
    refreshes it once and sends the request once more (a second 401 is the
    answer). Synchronous code only: the lookup touches the database.
    """

    def __init__(self, connection):
        self.connection = connection

    def auth_flow(self, request):
        from .services import access_token, access_token_refused

        token = access_token(connection=self.connection)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = access_token_refused(connection=self.connection, token=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
