"""integrations.google_http's https path, the one every Google API call takes in production: through the egress
proxy by CONNECT, then TLS end to end with the Google host, verified against its name. The origin is a real https
server (tests.egress_proxy.HTTPSOrigin) with a certificate for a made-up Google host from a CA made for the test;
only the recording proxy knows where that name lives, so a request that skipped the tunnel could not reach it."""

import base64
import ssl

import pytest

from integrations import egress, google_http
from tests.egress_proxy import HTTPSOrigin, RecordingProxy, ThrowawayCA

GOOGLE = "www.googleapis.test"


@pytest.fixture
def ca(tmp_path):
    return ThrowawayCA(tmp_path)


@pytest.fixture
def start():
    """`start(server)`: the server, stopped after the test."""
    started = []
    yield lambda server: started.append(server) or server
    for server in started:
        server.stop()


def _behind_proxy(environment, start, origin, proxy_url="{base}"):
    proxy = start(RecordingProxy(resolve={GOOGLE: origin.address}))
    environment.setenv("HTTPS_PROXY", proxy_url.format(base=proxy.base, port=proxy.address[1]))
    egress.reset()
    return proxy


@pytest.fixture
def google(ca):
    """The transport the Google API clients are built over, trusting the test's CA."""
    transport = google_http.http(timeout=5)
    transport.ca_certs = str(ca.path)  # httplib2.Http's CA bundle (certifi's unless set), given to each connection
    yield transport
    transport.close()


def test_a_get_goes_through_a_connect_tunnel_to_the_google_host(no_proxy_environment, ca, start, google):
    origin = start(HTTPSOrigin(ca, GOOGLE))
    proxy = _behind_proxy(no_proxy_environment, start, origin)

    response, content = google.request(f"{origin.base}/x")

    assert (response.status, content) == (200, origin.body)
    authority = f"{GOOGLE}:{origin.address[1]}"
    assert proxy.seen == [("CONNECT", authority)]
    [(method, path, headers, _)] = origin.seen
    assert (method, path, headers["Host"]) == ("GET", "/x", authority)


def test_a_post_goes_through_the_tunnel_once_with_its_body(no_proxy_environment, ca, start, google):
    origin = start(HTTPSOrigin(ca, GOOGLE))
    proxy = _behind_proxy(no_proxy_environment, start, origin)
    event = b'{"summary": "Standup"}'

    response, content = google.request(
        f"{origin.base}/calendar/v3/calendars/primary/events",
        "POST",
        body=event,
        headers={"Content-Type": "application/json"},
    )

    assert (response.status, content) == (200, origin.body)
    assert proxy.seen == [("CONNECT", f"{GOOGLE}:{origin.address[1]}")]
    [(method, path, headers, body)] = origin.seen
    assert (method, path, headers["Host"], body) == (
        "POST",
        "/calendar/v3/calendars/primary/events",
        f"{GOOGLE}:{origin.address[1]}",
        event,
    )


def test_the_next_request_reuses_the_tunnel(no_proxy_environment, ca, start, google):
    origin = start(HTTPSOrigin(ca, GOOGLE))
    proxy = _behind_proxy(no_proxy_environment, start, origin)

    google.request(f"{origin.base}/a")
    google.request(f"{origin.base}/b")

    assert [path for _, path, _, _ in origin.seen] == ["/a", "/b"]
    assert len(proxy.seen) == 1


def test_a_certificate_for_another_name_is_refused_at_the_end_of_the_tunnel(no_proxy_environment, ca, start, google):
    # The proxy is not the party TLS authenticates: the tunnel's TLS is verified against the Google host's name.
    origin = start(HTTPSOrigin(ca, GOOGLE, certificate_for="elsewhere.test"))
    proxy = _behind_proxy(no_proxy_environment, start, origin)

    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        google.request(f"{origin.base}/x")

    assert proxy.seen == [("CONNECT", f"{GOOGLE}:{origin.address[1]}")]
    assert origin.seen == []


def test_a_host_in_no_proxy_is_reached_directly(no_proxy_environment, ca, start, google):
    # localhost: a name the resolver knows, so going direct can succeed (www.googleapis.test only the proxy knows).
    origin = start(HTTPSOrigin(ca, "localhost"))
    proxy = _behind_proxy(no_proxy_environment, start, origin)
    no_proxy_environment.setenv("NO_PROXY", "localhost")
    egress.reset()

    response, content = google.request(f"{origin.base}/x")

    assert (response.status, content) == (200, origin.body)
    assert proxy.seen == []
    [(_, _, headers, _)] = origin.seen
    assert headers["Host"] == f"localhost:{origin.address[1]}"


def test_the_proxy_credentials_go_with_the_connect_only(no_proxy_environment, ca, start, google):
    origin = start(HTTPSOrigin(ca, GOOGLE))
    proxy = _behind_proxy(no_proxy_environment, start, origin, "http://user:p%40ss@127.0.0.1:{port}")

    response, _ = google.request(f"{origin.base}/x")

    assert response.status == 200
    [(method, _, headers)] = proxy.received
    assert method == "CONNECT"
    assert headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    [(_, _, headers, _)] = origin.seen
    assert "Proxy-Authorization" not in headers  # Google never sees them
