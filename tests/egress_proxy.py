"""A recording forward proxy and an httpx-level fake served on a socket, both on 127.0.0.1, for the egress tests.

`RecordingProxy` is a real HTTP proxy: an absolute-form request (`GET http://host/path`) is forwarded to its
origin and answered back, a CONNECT is tunnelled; each is recorded in `seen` as (method, target). A test points
HTTP_PROXY at it and the provider's base URL at a fake on a real socket (`ServedRouter` for the respx-style fakes,
or a stdlib fake such as FakeFreeBusy): what the proxy saw is what went through it; with the fake's host in
NO_PROXY the same call succeeds and the proxy sees nothing. Stdlib servers speaking HTTP/1.1 with Nagle off
(DESIGN.md: otherwise every request stalls ~40 ms).
"""

import http.client
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
}


class _Server:
    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status, headers, content):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)


class RecordingProxy(_Server):
    """A forward proxy that records every request it carries: `seen` holds (method, absolute URL or host:port)."""

    def __init__(self):
        self.seen = []
        super().__init__()

    def hosts(self):
        return {urlsplit(target if "://" in target else f"//{target}").hostname for _, target in self.seen}

    def _handler(self):
        proxy = self

        class Handler(_Handler):
            def _forward(self):
                proxy.seen.append((self.command, self.path))
                if "://" not in self.path:
                    self.close_connection = True
                    return self._reply(400, [], b"not a proxy request")
                target = urlsplit(self.path)
                body = self._body()
                upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
                upstream.connect()
                upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                path = target.path + (f"?{target.query}" if target.query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, path or "/", body=body or None, headers=headers)
                answer = upstream.getresponse()
                content = answer.read()
                upstream.close()
                self._reply(answer.status, answer.getheaders(), content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

            def do_CONNECT(self):
                proxy.seen.append(("CONNECT", self.path))
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=10)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                sockets = [self.connection, upstream]
                try:
                    while True:
                        readable, _, _ = select.select(sockets, [], [], 10)
                        if not readable:
                            break
                        for sock in readable:
                            data = sock.recv(65536)
                            if not data:
                                return
                            (upstream if sock is self.connection else self.connection).sendall(data)
                finally:
                    upstream.close()
                    self.close_connection = True

        return Handler


class ServedRouter(_Server):
    """An httpx-level fake (a respx Router's `handler`, or any request -> response callable) answering on a real
    socket: a request for `<base>/path` is handed over as `<upstream>/path`, the URL the fake's routes know."""

    def __init__(self, handler, upstream):
        self.handler = handler
        self.upstream = upstream.rstrip("/")
        super().__init__()

    def _handler(self):
        served = self

        class Handler(_Handler):
            def _any(self):
                request = httpx.Request(
                    self.command,
                    served.upstream + self.path,
                    headers=[(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP],
                    content=self._body(),
                )
                try:
                    response = served.handler(request)
                except Exception as exc:  # an unrouted request: a readable answer, not a dropped connection
                    response = httpx.Response(500, text=f"{type(exc).__name__}: {exc}")
                response.read()
                # The content is decoded already: its Content-Encoding no longer applies.
                headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
                self._reply(response.status_code, headers, response.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        return Handler
