"""A small clamd client: INSTREAM over a TCP or Unix socket.

    zINSTREAM\\0, then chunks as <4-byte big-endian length><bytes>, then a zero
    length; clamd answers "stream: OK", "stream: <signature> FOUND" or "... ERROR".

The file is streamed chunk by chunk, so memory stays at one chunk whatever its
size. clamd's StreamMaxLength refuses larger files with an ERROR reply (it may
also close the socket while we still send), which is reported, never taken
for clean.
"""

import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlparse

from django.conf import settings

from integrations.errors import ProviderUnavailable
from integrations.providers import ProviderAdapter

PROVIDER = "clamav"

MAX_CHUNK = 64 * 1024


class ClamdError(Exception):
    """The scanner could not give a verdict (unreachable, timed out, refused the stream)."""


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str = ""
    raw: str = ""


def _connect(url, timeout):
    parsed = urlparse(url)
    try:
        if parsed.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parsed.path)
            return sock
        if parsed.scheme == "tcp":
            return socket.create_connection((parsed.hostname, parsed.port or 3310), timeout=timeout)
    except OSError as exc:
        raise ClamdError(f"cannot connect to clamd at {url}: {exc}") from exc
    raise ClamdError(f"CLAMD_URL must be tcp://host:port or unix:///path, got {url!r}")


def _read_reply(sock):
    data = b""
    while not data.endswith(b"\0"):
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data.rstrip(b"\0").decode("utf-8", "replace").strip()


def parse_reply(reply):
    if reply.endswith("FOUND"):
        body = reply[: -len("FOUND")].strip()
        signature = body.split(":", 1)[1].strip() if ":" in body else body
        return ScanResult(infected=True, signature=signature, raw=reply)
    if reply.endswith(": OK") or reply == "OK":
        return ScanResult(infected=False, raw=reply)
    raise ClamdError(f"clamd could not scan the file: {reply or 'no answer'}")


def instream(chunks, *, url, timeout):
    """Scan the bytes from `chunks` (an iterable of bytes); ScanResult or ClamdError."""
    sock = _connect(url, timeout)
    try:
        try:
            sock.sendall(b"zINSTREAM\0")
            for chunk in chunks:
                for start in range(0, len(chunk), MAX_CHUNK):
                    piece = chunk[start : start + MAX_CHUNK]
                    sock.sendall(struct.pack("!L", len(piece)) + piece)
            sock.sendall(struct.pack("!L", 0))
        except (BrokenPipeError, ConnectionResetError):
            pass  # clamd stopped reading (size limit); its reply says why
        except OSError as exc:
            raise ClamdError(f"clamd stream failed: {exc}") from exc
        try:
            return parse_reply(_read_reply(sock))
        except OSError as exc:
            raise ClamdError(f"clamd did not answer: {exc}") from exc
    finally:
        sock.close()


def ping(*, url, timeout):
    sock = _connect(url, timeout)
    try:
        sock.sendall(b"zPING\0")
        return _read_reply(sock) == "PONG"
    except OSError as exc:
        raise ClamdError(f"clamd did not answer PING: {exc}") from exc
    finally:
        sock.close()


class ClamdAdapter(ProviderAdapter):
    """A scan is an outbound call like any other: limiter, breaker, one ProviderCall with its latency."""

    provider = PROVIDER
    sdk_errors = (ClamdError,)

    def translate(self, exc):
        # Unreachable, timed out or refused the stream: no verdict, worth another try later.
        return ProviderUnavailable(PROVIDER, str(exc))


CLAMD = ClamdAdapter()


def scan(chunks, *, owner=None, related=None):
    """Scan the bytes from `chunks` with the clamd at CLAMD_URL as one gateway attempt; a ScanResult."""
    counted = [0]

    def counting():
        for chunk in chunks:
            counted[0] += len(chunk)
            yield chunk

    with CLAMD.attempt("scan", owner=owner, related=related) as call:
        result = instream(counting(), url=settings.CLAMD_URL, timeout=settings.CLAMD_TIMEOUT_SECONDS)
        call.record(units={"bytes": counted[0]})
    return result
