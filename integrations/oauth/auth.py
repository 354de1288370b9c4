import httpx


class BearerAuth(httpx.Auth):
    """Authorization: Bearer <the connection's access token>, refreshed through the hub when due.

    The token is looked up per request (cheap: a refresh happens only when
    fewer than OAUTH_REFRESH_MARGIN_SECONDS remain), so a long sync never sends
    an expired token. Synchronous code only: the lookup touches the database.
    """

    def __init__(self, connection):
        self.connection = connection

    def auth_flow(self, request):
        from .services import access_token

        request.headers["Authorization"] = f"Bearer {access_token(connection=self.connection)}"
        yield request
