"""A local HTTPS identity provider for msal (which refuses http:// authorities).

A self-signed certificate made here, a stdlib HTTP/1.1 server on 127.0.0.1
(Nagle off, else every request stalls ~40 ms), OpenID discovery and a token
endpoint whose answers the test scripts. Every request is recorded.
"""

import datetime
import ipaddress
import json
import random
import ssl
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.local_http import QuietHandler, serve, stop

PORTS = range(18400, 18500)
TENANT = "common"
CLIENT_ID = "ms-client-id-123"


def make_certificate(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "idp.crt", directory / "idp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def id_token(claims):
    """An ID token as Microsoft would send it (msal reads the claims; it does not check the signature)."""
    now = int(time.time())
    body = {"aud": CLIENT_ID, "iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0", **claims}
    return jwt.encode(body, "not-checked-by-msal-" * 3, algorithm="HS256")


class FakeIdentityProvider:
    def __init__(self, directory):
        self.cert_path, key_path = make_certificate(directory)
        self.requests = []  # (method, path, form dict)
        self.token_responses = []  # scripted: (status, body dict) or callable(form) -> (status, body)
        self.lock = threading.Lock()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_path, key_path)
        self.server = self._bind()
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = serve(self.server)

    def _bind(self):
        handler = _handler(self)
        for port in random.sample(PORTS, len(PORTS)):
            try:
                return ThreadingHTTPServer(("127.0.0.1", port), handler)
            except OSError:
                continue
        raise RuntimeError("no free port in 18400-18499")

    def stop(self):
        stop(self.server)

    def token_requests(self):
        return [form for method, path, form in self.requests if path.endswith("/oauth2/v2.0/token")]

    def discovery(self):
        return {
            "issuer": f"{self.base}/{TENANT}/v2.0",
            "authorization_endpoint": f"{self.base}/{TENANT}/oauth2/v2.0/authorize",
            "token_endpoint": f"{self.base}/{TENANT}/oauth2/v2.0/token",
            "end_session_endpoint": f"{self.base}/{TENANT}/oauth2/v2.0/logout",
            "jwks_uri": f"{self.base}/{TENANT}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
        }

    def next_token_response(self, form):
        with self.lock:
            item = self.token_responses.pop(0) if len(self.token_responses) > 1 else self.token_responses[0]
        return item(form) if callable(item) else item


def _handler(idp):
    class Handler(QuietHandler):
        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = urlsplit(self.path).path
            with idp.lock:
                idp.requests.append(("GET", path, {}))
            if path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
                return self._send(200, idp.discovery())
            return self._send(404, {"error": "not_found"})

        def do_POST(self):
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            with idp.lock:
                idp.requests.append(("POST", path, form))
            if path == f"/{TENANT}/oauth2/v2.0/token":
                status, body = idp.next_token_response(form)
                return self._send(status, body)
            return self._send(404, {"error": "not_found"})

    return Handler
