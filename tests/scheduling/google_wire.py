"""An httplib2-level Google fake (FakeGoogle, FakeGoogleCalendar) served over a real socket on 127.0.0.1.

The usual fixtures put the fake in place of the hub's httplib2.Http, so httplib2's own connection handling never
runs. Served here instead (GOOGLE_CALENDAR_API_BASE points at it), the hub's real transport speaks HTTP/1.1 to
it: what httplib2 does when a connection drops is what the test sees. Stdlib server, Nagle off (see DESIGN.md).

`drop` plays a lost answer: each request whose method is next in it is applied by the fake, then the connection
is closed without a status line (the client sees RemoteDisconnected), as when Google kept a write but the
answer never came back.
"""

import threading
from http.server import ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.local_http import QuietHandler, serve, stop

GOOGLE_ROOT = "https://www.googleapis.com"


class GoogleOnTheWire:
    def __init__(self, fake):
        self.fake = fake
        self.drop = []  # methods ("POST", "GET", ...) whose next request is applied and left unanswered
        self.dropped = []  # (method, path) of every answer withheld
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve(self.server)

    def stop(self):
        stop(self.server)

    def _withhold(self, method, path):
        with self.lock:
            if method in self.drop:
                self.drop.remove(method)
                self.dropped.append((method, path))
                return True
            return False

    def _handler(self):
        wire = self

        class Handler(QuietHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with wire.lock:
                    response, content = wire.fake.request(
                        GOOGLE_ROOT + self.path, self.command, body, dict(self.headers.items())
                    )
                if wire._withhold(self.command, unquote(urlsplit(self.path).path)):
                    self.close_connection = True  # applied, and the answer never leaves
                    return
                self.send_response(int(response.status))
                for name, value in response.items():
                    if name not in ("status", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        return Handler
