"""The httplib2 transport under every Google API client in the hub (google-api-python-client speaks httplib2).

Gmail (messaging/mail/providers/gmail), Google Calendar (scheduling/calendars/google.py), Meet
(scheduling/providers/google_meet.py) and free/busy (scheduling/providers/freebusy.py) build their services over
`http(timeout=...)`, never over a bare httplib2.Http: one place decides how often a request goes on the wire.

Proxy: httplib2 reaches a proxy only through PySocks, which the hub does not install; without it httplib2 ignores
HTTPS_PROXY and goes direct (a hub that must leave through a proxy could not reach Google at all). Its connections
here follow the hub's egress rule instead (integrations.egress.proxy_for, per host): an https host through the
proxy by CONNECT (the standard library's tunnel), an http one by absolute-form requests to the proxy.

httplib2.RETRIES = 1: httplib2 retries a failed connection once by default; the gateway and the task base are the
one retry loop. `requirements.txt` pins httplib2 on its own because OneSendHttp overrides a private method.
"""

import base64
import http.client as http_client  # not `http`: the module's own http() below would shadow it
import socket
from urllib.parse import unquote, urlsplit

import httplib2

from . import egress

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

    Its connections follow the egress rule (`CONNECTIONS`); httplib2's own proxy reading is off (proxy_info=None).
    """

    def __init__(self, *args, **kwargs):
        kwargs["proxy_info"] = None
        super().__init__(*args, **kwargs)

    def request(
        self,
        uri,
        method="GET",
        body=None,
        headers=None,
        redirections=httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type=None,
    ):
        if connection_type is None:
            connection_type = CONNECTIONS.get(urlsplit(uri).scheme)
        return super().request(uri, method, body, headers, redirections, connection_type)

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


def _proxy_authorization(proxy):
    if not proxy.username:
        return {}
    token = base64.b64encode(f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


class _ProxiedHTTPConnection(httplib2.HTTPConnectionWithTimeout):
    """httplib2's http connection, sent to the egress proxy for its host (absolute-form) when there is one."""

    def __init__(self, host, port=None, timeout=None, proxy_info=None):
        super().__init__(host, port=port, timeout=timeout)
        proxy = egress.proxy_for(f"http://{self.host}:{self.port}")
        self._proxy = urlsplit(proxy) if proxy else None

    def connect(self):
        if self._proxy is None:
            return super().connect()
        self.sock = socket.create_connection((self._proxy.hostname, self._proxy.port or 80), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def putrequest(self, method, url, *args, **kwargs):
        if self._proxy is not None and url.startswith("/"):
            url = f"http://{self.host}:{self.port}{url}"
        super().putrequest(method, url, *args, **kwargs)
        if self._proxy is not None:
            for name, value in _proxy_authorization(self._proxy).items():
                self.putheader(name, value)


class _ProxiedHTTPSConnection(httplib2.HTTPSConnectionWithTimeout):
    """httplib2's https connection, tunnelled (CONNECT) through the egress proxy for its host when there is one."""

    def __init__(self, host, port=None, **kwargs):
        kwargs["proxy_info"] = None
        super().__init__(host, port=port, **kwargs)
        proxy = egress.proxy_for(f"https://{self.host}:{self.port}")
        self._proxy = urlsplit(proxy) if proxy else None

    def connect(self):
        if self._proxy is None:
            return super().connect()
        tunnel = http_client.HTTPConnection(self._proxy.hostname, self._proxy.port or 80, timeout=self.timeout)
        tunnel.set_tunnel(self.host, self.port, headers=_proxy_authorization(self._proxy))
        tunnel.connect()  # the CONNECT exchange; raises OSError when the proxy refuses
        tunnel.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(tunnel.sock, server_hostname=self.host)


CONNECTIONS = {"http": _ProxiedHTTPConnection, "https": _ProxiedHTTPSConnection}


def http(*, timeout=None):
    """A fresh transport for one Google service (wrapped in google_auth_httplib2.AuthorizedHttp by the caller)."""
    return OneSendHttp(timeout=timeout)
