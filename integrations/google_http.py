"""The httplib2 transport under every Google API client in the hub (google-api-python-client speaks httplib2).

Gmail (messaging/mail/providers/gmail), Google Calendar (scheduling/calendars/google.py), Meet
(scheduling/providers/google_meet.py) and free/busy (scheduling/providers/freebusy.py) build their services over
`http(timeout=...)`, never over a bare httplib2.Http: one place decides how often a request goes on the wire.

httplib2.RETRIES = 1: httplib2 retries a failed connection once by default; the gateway and the task base are the
one retry loop. `requirements.txt` pins httplib2 on its own because OneSendHttp overrides a private method.
"""

import httplib2

httplib2.RETRIES = 1  # httplib2 retries a failed connection once by default; ours is the only retry loop

READS = ("GET", "HEAD")


class OneSendHttp(httplib2.Http):
    """An httplib2.Http that sends a request that changes something (POST, PUT, PATCH, DELETE) exactly once.

    When the answer's status line never arrives (the server closed the connection: RemoteDisconnected,
    BadStatusLine), httplib2 sends the request again "regardless of the number of RETRIES set", taking the
    connection for a stale kept-alive one. For a write the provider had already applied, that is a second one
    (a second message to the recipient, a second calendar event with its invitations) inside one gateway
    attempt, invisible to the call log. Here the dropped connection is the attempt's error instead: the gateway
    records and classifies it (retryable), and whoever retries decides how to do so safely (mail looks its
    Message-ID up in Sent first: messaging.mail.services.writing). Reads keep httplib2's stale-connection retry:
    sending a GET twice changes nothing.
    """

    def _conn_request(self, conn, request_uri, method, body, headers):
        if method in READS:
            return super()._conn_request(conn, request_uri, method, body, headers)
        try:
            if conn.sock is None:
                conn.connect()
            conn.request(method, request_uri, body, headers)
            response = conn.getresponse()
            content = response.read()
        except BaseException:
            conn.close()
            raise
        response = httplib2.Response(response)
        return response, httplib2._decompressContent(response, content, self.limit_kwargs)


def http(*, timeout=None):
    """A fresh transport for one Google service (wrapped in google_auth_httplib2.AuthorizedHttp by the caller)."""
    return OneSendHttp(timeout=timeout)
