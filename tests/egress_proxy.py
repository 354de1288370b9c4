"""A recording forward proxy and an httpx-level fake served on a socket, both on 127.0.0.1, for the egress tests.

`RecordingProxy` is a real HTTP proxy: an absolute-form request (`GET http://host/path`) is forwarded to its
origin and answered back, a CONNECT is tunnelled; each is recorded in `seen` as (method, target). A test points
HTTP_PROXY at it and the provider's base URL at a fake on a real socket (`ServedRouter` for the respx-style fakes,
or a stdlib fake such as FakeFreeBusy): what the proxy saw is what went through it; with the fake's host in
NO_PROXY the same call succeeds and the proxy sees nothing. Stdlib servers speaking HTTP/1.1 with Nagle off
(DESIGN.md: otherwise every request stalls ~40 ms).

For https through the proxy (a CONNECT tunnel, then TLS end to end): `HTTPSOrigin` answers on 127.0.0.1 with a
certificate for a made-up name from a `ThrowawayCA`, and the proxy's `resolve` sends its tunnels for that name there.
"""

import datetime
import http.client
import select
import socket
import ssl
import sys
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.local_http import QuietHandler, serve, stop

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
    server_class = ThreadingHTTPServer

    def __init__(self):
        self.server = self.server_class(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self.base = f"http://127.0.0.1:{self.address[1]}"
        serve(self.server)

    def stop(self):
        stop(self.server)


class _Handler(QuietHandler):
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
    """A forward proxy that records every request it carries: `seen` holds (method, absolute URL or host:port),
    `received` the same with the request's headers (a CONNECT's are what the proxy alone is told, such as
    Proxy-Authorization). `resolve` maps a host name to the (address, port) its tunnels go to instead, for names no
    resolver knows (a test's `HTTPSOrigin`)."""

    def __init__(self, resolve=None):
        self.received = []
        self.resolve = dict(resolve or {})
        super().__init__()

    @property
    def seen(self):
        return [(method, target) for method, target, _ in self.received]

    def hosts(self):
        return {urlsplit(target if "://" in target else f"//{target}").hostname for _, target in self.seen}

    def _handler(self):
        proxy = self

        class Handler(_Handler):
            def _forward(self):
                proxy.received.append((self.command, self.path, self.headers))
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
                proxy.received.append(("CONNECT", self.path, self.headers))
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection(proxy.resolve.get(host, (host, int(port))), timeout=10)
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


class ThrowawayCA:
    """A certificate authority made for one test in `directory`: `path` is its certificate (the CA bundle a client
    verifies with), `issue(hostname)` a server certificate for that name, as (certificate file, key file)."""

    def __init__(self, directory):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())  # EC, not RSA: a key in a millisecond
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Integration Hub test CA")])
        self.certificate = (
            self._certificate(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def _certificate(self, subject, public_key):
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )

    def issue(self, hostname):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            self._certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]), key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        certificate_file, key_file = self.directory / f"{hostname}.pem", self.directory / f"{hostname}.key"
        certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return certificate_file, key_file


def _key_usage(**granted):
    usages = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{usage: granted.get(usage, False) for usage in usages})


class _TLSServer(ThreadingHTTPServer):
    def __init__(self, *args, **kwargs):
        self.errors = []
        super().__init__(*args, **kwargs)

    def handle_error(self, request, client_address):
        # A client refusing the certificate (what some tests are about) ends the handshake: recorded, not printed.
        self.errors.append(sys.exc_info()[1])


class HTTPSOrigin(_Server):
    """An https server on 127.0.0.1 with a certificate for `hostname` from `ca` (`certificate_for`: another name, for
    a client that must refuse it). Every request is answered 200 with `body` and recorded in `seen` as (method,
    path, headers, body), a failed handshake in `errors`; `base` is https://<hostname>:<port>, reached through a proxy that resolves the name here
    (RecordingProxy(resolve={hostname: origin.address})) or, for `localhost`, directly."""

    server_class = _TLSServer

    def __init__(self, ca, hostname, *, body=b"served over tls", certificate_for=None):
        self.seen = []
        self.body = body
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*ca.issue(certificate_for or hostname))
        super().__init__()
        self.errors = self.server.errors
        self.base = f"https://{hostname}:{self.address[1]}"

    def _handler(self):
        origin = self

        class Handler(_Handler):
            def setup(self):
                self.request = origin.context.wrap_socket(self.request, server_side=True)  # the handshake
                super().setup()

            def finish(self):
                super().finish()
                self.request.close()  # the TLS socket: the server closes only the plain one it accepted

            def _any(self):
                origin.seen.append((self.command, self.path, self.headers, self._body()))
                self._reply(200, [("Content-Type", "text/plain")], origin.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        return Handler
