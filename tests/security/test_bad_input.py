"""#17.7 (issue table rows 8, 9, 10, 13): every bad input is a JSON 4xx; dependency outages are a JSON 503."""

import base64
import json

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _request_schemas():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for name, component in components.items():
        if name.endswith("Request"):
            yield name, component


# Primary-key relations: an out-of-range id is looked up, found missing and answered 400 "does not exist"
# (Django returns no row for an out-of-range integer lookup); see test_a_huge_owner_id_is_a_400.
RELATIONS = {"InvoiceCreateRequest.owner", "SubscriptionCreateRequest.owner"}


class TestBoundedNumbers:
    def test_every_numeric_input_has_a_maximum(self):
        """A number the database cannot hold (2**63) must be a 400 from validation, not a 500 from the INSERT."""
        unbounded = []
        for name, component in _request_schemas():
            for prop, spec in (component.get("properties") or {}).items():
                if spec.get("readOnly"):
                    continue
                if spec.get("type") in {"integer", "number"} and "maximum" not in spec and "enum" not in spec:
                    unbounded.append(f"{name}.{prop}")
        assert sorted(set(unbounded) - RELATIONS) == []

    def test_a_huge_invoice_amount_is_a_400(self, staff_client, user):
        resp = staff_client.post(
            "/api/v1/payments/invoices/", {"owner": user.pk, "amount": 2**63, "currency": "usd"}, format="json"
        )
        assert resp.status_code == 400 and resp.json()["error"] == "invalid"

    def test_a_huge_owner_id_is_a_400(self, staff_client):
        resp = staff_client.post(
            "/api/v1/payments/invoices/", {"owner": 2**63, "amount": 100, "currency": "usd"}, format="json"
        )
        assert resp.status_code == 400 and resp.json()["error"] == "invalid"

    def test_a_huge_refund_amount_is_a_400(self, staff_client):
        from payments.models import Refund
        from tests.payments.factories import SucceededPaymentFactory

        payment = SucceededPaymentFactory()
        resp = staff_client.post(f"/api/v1/payments/payments/{payment.pk}/refunds/", {"amount": 2**63}, format="json")
        assert resp.status_code == 400 and resp.json()["error"] == "invalid"
        assert not Refund.objects.exists()

    def test_a_huge_id_in_the_path_is_a_404(self, user_client):
        resp = user_client.get(f"/api/v1/payments/invoices/{2**70}/")
        assert resp.status_code == 404 and resp.json()["error"] == "not_found"

    @pytest.mark.parametrize("method", ["get", "patch", "delete"])
    def test_a_huge_calendar_id_beside_an_event_id_is_a_404_never_sent_to_the_database(self, user_client, method):
        """The event lookup filtered the foreign key column with the raw id: SQLite (make run's database)
        raised OverflowError, a 500. A lookup through the calendar's own key is range-checked by Django."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            resp = getattr(user_client, method)(f"/api/v1/calendars/{2**70}/events/100/", {}, format="json")
        assert resp.status_code == 404, resp.content
        assert resp.json()["error"] == "not_found"
        assert not [q for q in queries.captured_queries if str(2**70) in q["sql"]]


class TestUnstorableText:
    def test_a_nul_in_a_filter_is_a_json_400(self, user_client):
        resp = user_client.get("/api/v1/integrations/calls/?provider=%00")
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid"

    @pytest.mark.parametrize("text", ["a\\u0000b", "a\\ud800b"])
    def test_a_nul_or_lone_surrogate_in_a_json_body_is_a_json_400(self, user_client, text):
        from messaging.models import SmsMessage

        body = '{"to": "+15005550006", "body": "' + text + '"}'
        resp = user_client.post("/api/v1/messaging/sms/", body, content_type="application/json")
        assert resp.status_code == 400, resp.content
        assert resp.json()["error"] == "parse_error"
        assert not SmsMessage.objects.exists()

    @pytest.mark.parametrize("path", ["/api/v1/messaging/sms/", "/api/v1/ai/completions/"])
    def test_a_json_body_nested_past_the_decoders_depth_is_a_json_400(self, user_client, path):
        """The JSON decoder gives up with a RecursionError (once a 500), in a sync view and the async AI one."""
        from messaging.models import SmsMessage

        body = '{"to": "+15005550006", "body": "hi", "x": ' + "[" * 5000 + "]" * 5000 + "}"
        resp = user_client.post(path, body, content_type="application/json")
        assert resp.status_code == 400, resp.content
        assert resp.json()["error"] == "parse_error"
        assert not SmsMessage.objects.exists()

    def test_a_nul_below_a_hundred_levels_is_a_json_400_too(self, user_client):
        """The NUL scan used to stop at depth 100 and let what lay below it through."""
        from messaging.models import SmsMessage

        body = '{"to": "+15005550006", "body": "hi", "x": ' + "[" * 150 + '"a\\u0000b"' + "]" * 150 + "}"
        resp = user_client.post("/api/v1/messaging/sms/", body, content_type="application/json")
        assert resp.status_code == 400, resp.content
        assert resp.json()["error"] == "parse_error"
        assert not SmsMessage.objects.exists()


class TestCursors:
    @pytest.mark.parametrize(
        "cursor",
        [
            "not-base64!!",
            base64.b64encode(b"p=garbage").decode(),
            base64.b64encode(b"p=\x00").decode(),
        ],
    )
    def test_a_malformed_cursor_is_a_json_400(self, user_client, cursor):
        resp = user_client.get("/api/v1/integrations/calls/", {"cursor": cursor})
        assert resp.status_code == 400, resp.content
        assert resp.json()["error"] == "invalid_cursor"

    def test_a_cursor_the_api_handed_out_still_works(self, user_client, user):
        from integrations.models import ProviderCall

        for _ in range(3):
            ProviderCall.objects.create(provider="stripe", operation="charge", owner=user, outcome="ok")
        first = user_client.get("/api/v1/integrations/calls/", {"page_size": 2}).json()
        second = user_client.get(first["next"])
        assert second.status_code == 200 and len(second.json()["results"]) == 1


class TestDjangoLevelErrors:
    def test_a_4mb_json_body_under_api_is_a_json_413(self, user_client):
        body = json.dumps({"to": "+15005550006", "body": "x" * (4 * 1024 * 1024)})
        resp = user_client.post("/api/v1/messaging/sms/", body, content_type="application/json")
        assert resp.status_code == 413
        assert resp.json()["error"] == "payload_too_large"

    @pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/twilio/sms", "/api/v1/auth/token"])
    def test_a_post_without_the_final_slash_is_a_json_404_naming_the_right_url(self, client, path):
        """Not CommonMiddleware's 301: a provider does not follow it, and a redirected POST loses its body."""
        resp = client.post(path, b"{}", content_type="application/json")
        assert resp.status_code == 404, resp.status_code
        assert resp.json()["error"] == "not_found"
        assert resp.json()["detail"].endswith(f"the URL ends with a slash: {path}/")

    def test_a_path_without_a_slash_and_no_slashed_route_gets_no_suggestion(self, client):
        resp = client.post("/api/v1/no-such-thing", b"{}", content_type="application/json")
        assert resp.status_code == 404 and "ends with a slash" not in resp.json()["detail"]

    def test_a_bad_host_under_api_is_a_json_400(self, user_client):
        resp = user_client.get("/api/v1/integrations/status/", HTTP_HOST="evil.example")
        assert resp.status_code == 400
        assert resp.json()["error"] == "bad_host"

    def test_a_bad_host_elsewhere_keeps_djangos_page(self, client):
        resp = client.get("/admin/login/", HTTP_HOST="evil.example")
        assert resp.status_code == 400 and resp["Content-Type"].startswith("text/html")

    def test_a_session_write_without_csrf_token_is_a_json_403(self, user):
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        resp = client.delete("/api/v1/documents/1/")
        assert resp.status_code == 403
        assert resp["Content-Type"] == "application/json"
        assert resp.json()["error"] in ("csrf_failed", "permission_denied")
        assert "CSRF" in resp.json()["detail"]

    def test_a_session_write_to_an_unknown_api_path_is_a_json_404(self, user):
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        resp = client.delete("/api/v1/documents/null,null/")
        assert resp.status_code == 404 and resp.json()["error"] == "not_found"

    def test_the_csrf_failure_view_answers_json_under_api(self, rf):
        from integrations.api.errors import csrf_failure

        resp = csrf_failure(rf.post("/api/v1/anything/"), reason="CSRF cookie not set.")
        assert resp.status_code == 403 and json.loads(resp.content)["error"] == "csrf_failed"


class TestDependencyOutages:
    @pytest.mark.redis
    def test_redis_down_on_a_rate_limited_post_is_a_503_with_retry_after(self, user_client, settings):
        from messaging.models import SmsMessage

        # A port in this suite's range where nothing listens: every cache call is refused.
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DEAD_REDIS}
        }
        resp = user_client.post("/api/v1/messaging/sms/", {"to": "+15005550006", "body": "hi"}, format="json")
        assert resp.status_code == 503
        body = resp.json()
        assert body["error"] == "service_unavailable" and "cache" in body["detail"]
        assert int(resp["Retry-After"]) == body["retry_after"] > 0
        assert "18896" not in resp.content.decode()
        assert not SmsMessage.objects.exists()

    @pytest.mark.postgres
    def test_postgresql_down_is_a_503_with_retry_after(self, transactional_db, user, monkeypatch):
        from django.db import connection

        from integrations.auth.tokens import token_create

        _, key = token_create(user=user)
        connection.close()
        monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(connection.settings_dict, "PORT", "18897")
        try:
            resp = APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/integrations/calls/")
        finally:
            connection.close()
        assert resp.status_code == 503
        assert resp.json()["error"] == "service_unavailable" and "database" in resp.json()["detail"]
        assert resp["Retry-After"]
        assert "18897" not in resp.content.decode()


DEAD_REDIS = "redis://127.0.0.1:18896/0"
