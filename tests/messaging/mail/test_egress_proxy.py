"""Mail's provider calls follow the egress rule (integrations.egress): through the proxy the environment names,
direct for a host in NO_PROXY (`egress_route` runs each test both ways). Outlook over Graph (httpx) and Gmail
(google-api-python-client over httplib2), each through the mail API against its fake on a real socket."""

import httpx
import pytest
import respx

from .conftest import google_conn, graph_left_out_folders, ms_conn
from .fake_gmail import make_message
from .test_outlook import graph_message

pytestmark = pytest.mark.django_db


def test_outlook_over_graph(settings, served, user, user_client, egress_route):
    router = respx.Router(assert_all_called=False)
    graph_left_out_folders(router)
    router.get(path="/v1.0/me/messages").mock(return_value=httpx.Response(200, json={"value": [graph_message(1)]}))
    graph = served(router.handler, "https://graph.microsoft.test")
    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = "ms-client-id", "ms-client-secret"
    settings.GRAPH_API_BASE = graph.base + "/v1.0"
    conn = ms_conn(user)

    response = user_client.get(f"/api/v1/mail/{conn.pk}/messages/")

    assert response.status_code == 200, response.content
    assert [m["subject"] for m in response.json()["messages"]] == ["Hello 1"]
    egress_route.check(graph.base)


def test_gmail_over_httplib2(gmail, user, user_client, egress_route):
    gmail.add(make_message(1))
    conn = google_conn(user)

    response = user_client.get(f"/api/v1/mail/{conn.pk}/messages/")

    assert response.status_code == 200, response.content
    assert len(response.json()["messages"]) == 1
    egress_route.check(gmail.base)


def test_a_gmail_request_reads_no_proxy_variable(gmail, user, user_client, no_proxy_environment, environ_reads):
    no_proxy_environment.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    gmail.add(make_message(1))
    conn = google_conn(user)
    assert user_client.get(f"/api/v1/mail/{conn.pk}/messages/").status_code == 200
    reads = environ_reads()

    assert user_client.get(f"/api/v1/mail/{conn.pk}/messages/?q=again").status_code == 200

    assert not [name for name in reads if "proxy" in name.lower()]
