"""A stdlib fake OpenAI-compatible provider, run as its own process by test_warm_start.

`python tests/serving/fake_openai.py` listens on loopback (a port from TEST_PORT_RANGE
when set, else one the OS picks), prints that port on its first line, and answers every
POST with a one-word chat completion until it is terminated. It runs apart from the test
process so that the test times the hub's server alone: after thousands of tests that
process has a large heap and leftover threads, and a fake answering from there stalled
individual requests (a full garbage collection alone took 50+ ms).
"""

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        answer = json.dumps(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": body.get("model", "gpt-4o-mini"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def _server():
    low, _, high = os.environ.get("TEST_PORT_RANGE", "").partition("-")
    for port in range(int(low), int(high) + 1) if low and high else [0]:
        try:
            return ThreadingHTTPServer(("127.0.0.1", port), FakeOpenAI)
        except OSError:
            continue
    sys.exit("no free port for the fake provider")


if __name__ == "__main__":
    server = _server()
    print(server.server_address[1], flush=True)
    server.serve_forever()
