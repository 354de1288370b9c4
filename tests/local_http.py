"""The tests' stdlib HTTP fakes on 127.0.0.1: one handler base and one way to serve and stop them.

HTTP/1.1 keep-alive with Nagle off (DESIGN.md: otherwise every request stalls ~40 ms), no request log
on stderr, served from a daemon thread whose request threads are daemons too.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass


def serve(server):
    """Serve `server` (an http.server.ThreadingHTTPServer) from a daemon thread, which it returns."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


def stop(server):
    server.shutdown()
    server.server_close()
