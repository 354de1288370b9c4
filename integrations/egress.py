"""The one rule for the egress proxy: which proxy, if any, an outbound request to a given host goes through.

A deployment that must leave through a proxy sets it once in the environment, the way curl, requests, httpx and
boto3 read it: HTTPS_PROXY for https targets, HTTP_PROXY for http ones, ALL_PROXY for either (lowercase names win
over uppercase, as urllib reads them), and NO_PROXY for hosts that go direct (a domain covers its subdomains,
`*` covers everything, IP ranges in CIDR form). The decision is requests' own (`get_environ_proxies`, which
botocore copies for boto3), made once per (scheme, host, port) in a process and cached: a client never scans the
environment per request (requests' trust_env did, ~16 % of a Stripe call's CPU, issue 11). A changed variable
takes effect at the next start.

Every client the hub builds takes its proxy from here:
- httpx clients (Graph, Teams, Webex, Zoom, Drive, Duffel, free/busy): `transport()` / `async_transport()`, which
  send each request direct or through its host's proxy;
- requests sessions (Stripe, Twilio, OAuth token endpoints and msal): `session()` / `configure(session)`;
- httplib2 under the Google API clients: integrations.google_http's connections, by `proxy_for`;
- the AI SDKs' httpx2 clients: `proxy_for(base_url)` at build (one host per client).
- boto3 clients: `botocore_proxies(endpoint)` as their Config's `proxies` (botocore's own reading of the
  environment is an older copy of requests' rule: no CIDR ranges in NO_PROXY).

Only what the environment names is trusted beyond the proxy itself where it protected something before: the
httpx transports take no SSL_CERT_FILE/SSL_CERT_DIR (certifi, as with trust_env=False), requests sessions read no
~/.netrc and take REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE once, as requests would per request.
"""

import functools
import os
import threading
from urllib.parse import urlsplit

import httpx
import requests
import requests.adapters
import requests.utils


@functools.lru_cache(maxsize=1024)
def _proxy(scheme, host, port):
    url = f"{scheme}://{host}" + (f":{port}" if port else "") + "/"
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"  # requests' reading of a bare host:port


def proxy_for(url):
    """The proxy URL a request to `url` goes through, or None to go direct (read from the environment once per
    scheme, host and port, then cached)."""
    parts = urlsplit(str(url))
    return _proxy(parts.scheme.lower(), (parts.hostname or "").lower(), parts.port)


@functools.cache
def ca_bundle():
    """The CA bundle requests would take from the environment (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE), or None."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def botocore_proxies(endpoint_url):
    """botocore's `Config(proxies=...)` for a client of `endpoint_url`: {scheme: proxy}, or {} to go direct (botocore
    then reads nothing from the environment itself; it decides once per client, for its endpoint, as here)."""
    proxy = proxy_for(endpoint_url)
    return {urlsplit(endpoint_url).scheme: proxy} if proxy else {}


def reset():
    """Forget what was read (tests that change the environment; a process otherwise reads it once)."""
    _proxy.cache_clear()
    ca_bundle.cache_clear()


# --- httpx ------------------------------------------------------------------------------------------------


class _Dispatch:
    """One httpx transport per proxy (None: direct), built on first use; each request goes to its host's."""

    transport_class = None

    def __init__(self, **options):
        # trust_env=False: the environment's proxies are decided here, and SSL_CERT_FILE / SSL_CERT_DIR must not
        # replace the CA bundle (certifi) the hub's httpx clients have always verified with.
        self._options = {"trust_env": False, **options}
        self._transports = {}
        self._lock = threading.Lock()

    def _for(self, url):
        proxy = _proxy(url.scheme, url.host, url.port)
        transport = self._transports.get(proxy)
        if transport is None:
            with self._lock:
                transport = self._transports.get(proxy)
                if transport is None:
                    transport = self._transports[proxy] = self.transport_class(proxy=proxy, **self._options)
        return transport


class Transport(_Dispatch, httpx.BaseTransport):
    transport_class = httpx.HTTPTransport

    def handle_request(self, request):
        return self._for(request.url).handle_request(request)

    def close(self):
        for transport in list(self._transports.values()):
            transport.close()


class AsyncTransport(_Dispatch, httpx.AsyncBaseTransport):
    transport_class = httpx.AsyncHTTPTransport

    async def handle_async_request(self, request):
        return await self._for(request.url).handle_async_request(request)

    async def aclose(self):
        for transport in list(self._transports.values()):
            await transport.aclose()


def transport(**options):
    """An httpx transport (`httpx.Client(transport=...)`) that follows the egress rule; `options` are
    httpx.HTTPTransport's (limits, verify, http2 ...): a client given a transport ignores its own."""
    return Transport(**options)


def async_transport(**options):
    """`transport` for an httpx.AsyncClient."""
    return AsyncTransport(**options)


# --- requests ---------------------------------------------------------------------------------------------


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, given its host's proxy unless the caller named one."""

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        proxy = proxy_for(request.url)
        if proxy and not proxies:
            proxies = {urlsplit(request.url).scheme: proxy}
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


def configure(session):
    """`session` (a requests.Session, or a library's subclass) made to follow the egress rule: its proxy per host
    from here, no environment read per request (trust_env off, so no ~/.netrc either), and the CA bundle the
    environment names, read once, unless the session was given its own."""
    session.trust_env = False
    if session.verify is True:
        session.verify = ca_bundle() or True
    for prefix in ("https://", "http://"):
        # The adapter a library mounted keeps its pool and retry settings (Twilio sizes its https pool).
        mounted = session.adapters.get(prefix) or requests.adapters.HTTPAdapter()
        session.mount(
            prefix,
            _Adapter(
                pool_connections=mounted._pool_connections,
                pool_maxsize=mounted._pool_maxsize,
                pool_block=mounted._pool_block,
                max_retries=mounted.max_retries,
            ),
        )
    return session


def session():
    """A new requests.Session that follows the egress rule (`configure`)."""
    return configure(requests.Session())
