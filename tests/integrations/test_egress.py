"""integrations.egress: the one rule every outbound client takes its proxy from, read from the environment once
per process and host (never per request). Each client family's test that its calls follow it lives beside that
family's tests (test_egress_proxy.py); here, the rule itself, the read-once property and the S3 client (boto3,
whose requests a local proxy cannot watch under moto)."""

import httpx
import pytest

from integrations import egress

PROXY = "http://proxy.internal:3128"


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({"HTTPS_PROXY": PROXY}, "https://api.stripe.com/v1", PROXY),
        ({"HTTPS_PROXY": PROXY}, "http://api.example.com", None),  # HTTP_PROXY is http's
        ({"HTTP_PROXY": PROXY}, "http://api.example.com", PROXY),
        ({"ALL_PROXY": PROXY}, "https://graph.microsoft.com", PROXY),
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": PROXY}, "https://a.example", PROXY),  # lowercase wins
        ({"HTTPS_PROXY": "proxy.internal:3128"}, "https://a.example", PROXY),  # a bare host:port is http
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "graph.microsoft.com"}, "https://graph.microsoft.com/v1.0", None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "microsoft.com"}, "https://graph.microsoft.com", None),  # subdomains
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": ".microsoft.com"}, "https://graph.microsoft.com", None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "graph.microsoft.com"}, "https://api.zoom.us", PROXY),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, "https://api.zoom.us", None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/8"}, "https://10.1.2.3:8443", None),  # CIDR
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/8"}, "https://11.1.2.3", PROXY),
        ({}, "https://api.stripe.com", None),
    ],
)
def test_the_rule(no_proxy_environment, environment, url, expected):
    for name, value in environment.items():
        no_proxy_environment.setenv(name, value)

    assert egress.proxy_for(url) == expected


def test_the_environment_is_read_once_per_host_not_per_request(no_proxy_environment, environ_reads, served):
    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    fake = served(lambda request: httpx.Response(204), "https://provider.test")
    session = egress.session()
    with httpx.Client(transport=egress.transport()) as client:
        client.get(fake.base)  # the host's proxy decided, under the environment of the moment
        session.get(fake.base)
        reads = environ_reads()
        client.get(fake.base)
        session.get(fake.base)
        egress.session().get(fake.base)  # a session built later reads nothing either

    assert not [name for name in reads if "proxy" in name.lower() or "ca_bundle" in name.lower()]


def test_a_changed_environment_applies_at_the_next_start(no_proxy_environment):
    no_proxy_environment.setenv("HTTPS_PROXY", PROXY)
    assert egress.proxy_for("https://api.zoom.us") == PROXY
    no_proxy_environment.setenv("NO_PROXY", "zoom.us")

    assert egress.proxy_for("https://api.zoom.us") == PROXY
    egress.reset()  # what a restart does
    assert egress.proxy_for("https://api.zoom.us") is None


@pytest.mark.parametrize("no_proxy", ["", "amazonaws.com", "10.0.0.0/8"])
@pytest.mark.parametrize("endpoint", ["https://s3.eu-west-1.amazonaws.com", "https://10.0.0.5:9000"])
def test_an_s3_client_takes_the_egress_rule(no_proxy_environment, settings, no_proxy, endpoint):
    """botocore reads the proxy variables itself unless told (an older copy of requests' rule: no CIDR ranges);
    the hub's S3 clients are told, so the proxy one uses for its endpoint is the egress rule's."""
    from documents.providers import s3_client

    no_proxy_environment.setenv("HTTPS_PROXY", PROXY)
    no_proxy_environment.setenv("NO_PROXY", no_proxy)
    settings.AWS_S3_ENDPOINT_URL, settings.AWS_S3_REGION_NAME = endpoint, "eu-west-1"
    settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY, settings.S3_BUCKET = "AKIA", "secret", "bucket"
    s3_client._storages.clear()

    client = s3_client._storage().connection.meta.client
    botocore_proxy = client._endpoint.http_session._proxy_config.proxy_url_for(endpoint + "/bucket/key")

    assert botocore_proxy == egress.proxy_for(endpoint)
