"""With DEBUG on (as `make run` runs), /api/ and /webhooks/ still answer errors as the hub's JSON shape.

Django answers an uncaught exception, and an Http404 that no URL pattern of ours catches, with its HTML debug
page whenever DEBUG is on, before handler404/handler500 are asked: clients of the API got HTML where the
contract promises `{"error": ..., "detail": ...}`. Admin and the other pages keep Django's debug pages.
"""

import logging

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import got_request_exception
from django.test import AsyncClient, Client

from integrations.webhooks.registry import VERIFIERS
from tests.ai.conftest import AsgiCall
from tests.integrations import webhook_provider as hubtest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def debug_on(settings):
    settings.DEBUG = True


def assert_json_error(response, status, code):
    assert response.status_code == status, (response.status_code, response.content[:200])
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = response.json()
    assert body["error"] == code and body["detail"]
    assert b"Traceback" not in response.content and b"DEBUG = True" not in response.content


def assert_debug_page(response, status):
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert b"DEBUG = True" in response.content  # Django's technical page, not the hub's


@pytest.mark.urls("tests.testapp.urls")
def test_a_crash_in_a_plain_api_view_is_the_json_500_and_still_logged_as_django_logs_it(caplog):
    signalled = []
    got_request_exception.connect(lambda sender, **kw: signalled.append(kw), weak=False, dispatch_uid="debug-json-test")
    try:
        with caplog.at_level(logging.ERROR, logger="django.request"):
            response = Client(raise_request_exception=False).get("/api/v1/test-boom/")
    finally:
        got_request_exception.disconnect(dispatch_uid="debug-json-test")
    assert_json_error(response, 500, "server_error")
    [logged] = [r for r in caplog.records if r.name == "django.request"]
    assert logged.levelno == logging.ERROR and logged.exc_info and "boom" in str(logged.exc_info[1])
    assert len(signalled) == 1  # error reporters (Sentry, the test client) still hear of it


def test_a_crash_in_a_drf_view_is_the_json_500(user_client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("status bug")

    monkeypatch.setattr("integrations.views.api.provider_status_list", broken)
    user_client.raise_request_exception = False
    assert_json_error(user_client.get("/api/v1/integrations/status/"), 500, "server_error")


@pytest.mark.urls("tests.testapp.urls")
def test_a_crash_under_the_async_handler_is_the_json_500():
    response = async_to_sync(AsyncClient(raise_request_exception=False).get)("/api/v1/test-boom/")
    assert_json_error(response, 500, "server_error")


@pytest.mark.django_db(transaction=True)  # the ASGI application closes connections around each request
@pytest.mark.urls("tests.testapp.urls")
def test_a_crash_through_the_hubs_asgi_application_is_the_json_500():
    async def run():
        call = AsgiCall("GET", "/api/v1/test-boom/").start()
        await call.task
        return call

    call = async_to_sync(run)()
    assert call.status == 500 and call.headers["content-type"] == "application/json"
    assert call.json()["error"] == "server_error"


def test_not_found_under_api_and_webhooks_is_the_json_404(user_client):
    assert_json_error(user_client.get("/api/v1/no-such-endpoint/"), 404, "not_found")
    assert_json_error(Client().post("/webhooks/stripe/extra/segments/", b"{}", "application/json"), 404, "not_found")
    assert_json_error(Client().get("/webhooks/"), 404, "not_found")


@pytest.mark.parametrize("prefix", ["/webhooks/", ""], ids=["fast-path", "full-chain"])
def test_a_crash_in_a_webhook_view_is_the_json_500(settings, monkeypatch, prefix):
    settings.WEBHOOK_FAST_PATH_PREFIX = prefix
    settings.HUBTEST_WEBHOOK_SECRET = hubtest.SECRET

    def broken(request):
        raise RuntimeError("verifier bug")

    monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, broken)
    body = hubtest.event_body("evt_debug")
    response = Client(raise_request_exception=False).post(
        "/webhooks/hubtest/", body, content_type="application/json", HTTP_X_HUBTEST_SIGNATURE=hubtest.sign(body)
    )
    assert_json_error(response, 500, "server_error")
    assert response["X-Request-ID"]


def test_a_webhook_path_without_its_slash_is_still_redirected(settings):
    assert Client().get("/webhooks/stripe").status_code == 301


def test_a_webhook_post_without_its_slash_is_a_json_404_naming_the_slashed_url():
    """CommonMiddleware's slash redirect raised RuntimeError for a POST with DEBUG on: an HTML 500 to the provider."""
    from integrations.models import WebhookEvent

    response = Client().post("/webhooks/stripe", b"{}", "application/json")
    assert_json_error(response, 404, "not_found")
    assert response.json()["detail"].endswith("the URL ends with a slash: /webhooks/stripe/")
    assert not WebhookEvent.objects.exists()


@pytest.mark.urls("tests.testapp.urls")
def test_admin_and_other_pages_keep_djangos_debug_pages(staff_user):
    staff = Client()
    staff.force_login(staff_user)
    assert_debug_page(staff.get("/admin/no-such-app/no-such-model/"), 404)
    assert_debug_page(Client().get("/no-such-page/"), 404)
    crash = Client(raise_request_exception=False).get("/test-boom/", HTTP_ACCEPT="text/html")
    assert_debug_page(crash, 500)
    assert b"boom (a test of the server error path)" in crash.content
