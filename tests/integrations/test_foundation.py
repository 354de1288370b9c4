import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from config.celery import route_by_module
from integrations.context import get_request_id
from integrations.models import WorkerHeartbeat
from integrations.registry import PROVIDERS
from integrations.tasks import ping

pytestmark = pytest.mark.django_db


class TestAuth:
    def test_token_endpoint_returns_a_token_for_good_credentials(self, api_client, user):
        resp = api_client.post(
            "/api/v1/auth/token/",
            {"username": user.username, "password": "correct horse battery staple"},
            format="json",
        )
        assert resp.status_code == 200
        assert resp.json()["token"]
        api_client.credentials(HTTP_AUTHORIZATION=f"Token {resp.json()['token']}")
        assert api_client.get("/api/v1/integrations/status/").status_code == 200

    def test_wrong_password_is_a_json_400(self, api_client, user):
        resp = api_client.post("/api/v1/auth/token/", {"username": user.username, "password": "no"}, format="json")
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid"

    def test_unauthenticated_is_json_401(self, api_client):
        resp = api_client.get("/api/v1/integrations/status/")
        assert resp.status_code == 401
        assert resp.json()["error"] == "not_authenticated"
        assert resp["WWW-Authenticate"].startswith("Token")

    def test_invalid_token_is_json_401_not_500(self, api_client):
        api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
        resp = api_client.get("/api/v1/integrations/status/")
        assert resp.status_code == 401
        assert resp.json()["error"] == "authentication_failed"

    def test_malformed_authorization_header_is_401(self, api_client):
        api_client.credentials(HTTP_AUTHORIZATION="Token a b c")
        assert api_client.get("/api/v1/integrations/status/").status_code == 401


class TestErrorShape:
    def test_unknown_api_route_is_json_404(self, user_client):
        resp = user_client.get("/api/v1/no-such-thing/")
        assert resp.status_code == 404
        assert resp.json()["error"] == "not_found"
        assert "/api/v1/no-such-thing/" in resp.json()["detail"]

    def test_wrong_method_is_json_405(self, user_client):
        resp = user_client.delete("/api/v1/integrations/status/")
        assert resp.status_code == 405
        assert resp.json() == {"error": "method_not_allowed", "detail": 'Method "DELETE" not allowed.'}

    def test_malformed_json_is_400_naming_the_problem(self, api_client):
        resp = api_client.post("/api/v1/auth/token/", data='{"username": ', content_type="application/json")
        assert resp.status_code == 400
        body = resp.json()
        assert body["error"] == "parse_error"
        assert "JSON parse error" in body["detail"]

    def test_server_error_under_api_is_json(self, client, settings):
        from integrations.api.errors import handler500

        resp = handler500(type("R", (), {"path": "/api/v1/x"})())
        assert resp.status_code == 500
        assert json.loads(resp.content)["error"] == "server_error"

    def test_request_id_is_echoed_or_generated(self, client):
        assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
        generated = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces\n")["X-Request-ID"]
        assert generated != "bad id with spaces\n" and len(generated) == 32


class TestStatusApi:
    def test_lists_every_provider_with_missing_setting_names(self, user_client, settings):
        settings.TWILIO_ACCOUNT_SID = "AC123"
        settings.TWILIO_AUTH_TOKEN = ""
        settings.TWILIO_PHONE_NUMBER = "+15005550006"
        resp = user_client.get("/api/v1/integrations/status/")
        assert resp.status_code == 200
        rows = {r["name"]: r for r in resp.json()}
        assert set(rows) == set(PROVIDERS)
        assert len(rows) == 24  # the twelve services, their members, email, clamav, alert hooks, audit archive
        assert rows["twilio"]["configured"] is False
        assert rows["twilio"]["missing"] == ["TWILIO_AUTH_TOKEN"]
        assert rows["twilio"]["circuit"] == "closed"

    def test_configured_provider_shows_no_values(self, user_client, settings):
        settings.STRIPE_SECRET_KEY = "sk_test_secretvalue"
        resp = user_client.get("/api/v1/integrations/status/")
        assert "sk_test_secretvalue" not in resp.content.decode()
        stripe = next(r for r in resp.json() if r["name"] == "stripe")
        assert stripe == {
            "name": "stripe",
            "service": "Stripe",
            "label": "Stripe",
            "configured": True,
            "missing": [],
            "circuit": "closed",
        }

    def test_twilio_needs_a_number_or_a_messaging_service(self, settings):
        settings.TWILIO_ACCOUNT_SID = "AC1"
        settings.TWILIO_AUTH_TOKEN = "tok"
        settings.TWILIO_PHONE_NUMBER = ""
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        assert PROVIDERS["twilio"].missing() == ["TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID"]
        settings.TWILIO_MESSAGING_SERVICE_SID = "MG1"
        assert PROVIDERS["twilio"].configured


class TestHealth:
    def test_healthz(self, client):
        assert client.get("/healthz").json() == {"status": "ok"}

    def test_readyz_fails_naming_the_worker_when_none_answered(self, staff_client):
        resp = staff_client.get("/readyz")
        assert resp.status_code == 503
        body = resp.json()
        assert body["failed"] == ["worker"]
        assert body["checks"]["database"]["ok"] and body["checks"]["cache"]["ok"] and body["checks"]["broker"]["ok"]

    def test_readyz_is_green_after_the_ping_task_ran(self, staff_client):
        ping.apply()
        resp = staff_client.get("/readyz")
        assert resp.status_code == 200, resp.json()
        assert resp.json()["checks"]["worker"]["last_seen_seconds"] < 5

    def test_readyz_reports_a_stale_heartbeat(self, staff_client):
        WorkerHeartbeat.objects.create(
            hostname="w1", seen_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_MAX_AGE_SECONDS + 5)
        )
        resp = staff_client.get("/readyz")
        assert resp.status_code == 503
        assert "heartbeat" in resp.json()["checks"]["worker"]["error"]

    def test_metrics_exposes_prometheus_text(self, client, settings):
        settings.METRICS_TOKEN = "metrics-test-token"
        resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token")
        assert resp.status_code == 200
        assert b"django_http_requests" in resp.content


class TestCelery:
    def test_tasks_route_to_their_provider_group_queue(self):
        assert route_by_module("payments.tasks.refund_send", (), {}, {}) == {"queue": "payments"}
        assert route_by_module("ai.tasks.x", (), {}, {}) == {"queue": "ai"}
        assert route_by_module("integrations.ping", (), {}, {}) == {"queue": "default"}

    def test_serializer_is_json_only_and_acks_late(self):
        from config.celery import app

        assert app.conf.accept_content == ["json"]
        assert app.conf.task_acks_late and app.conf.worker_prefetch_multiplier == 1

    def test_request_id_travels_into_tasks(self):
        from integrations.context import reset_request_id, set_request_id
        from integrations.signals import add_request_id_header, bind_request_id, unbind_request_id

        token = set_request_id("req-42")
        headers = {}
        add_request_id_header(headers=headers)
        reset_request_id(token)
        assert headers["request_id"] == "req-42"

        task = type("T", (), {"request": type("R", (), {"request_id": "req-42"})()})()
        bind_request_id(task_id="t1", task=task)
        assert get_request_id() == "req-42"
        unbind_request_id(task_id="t1")
        assert get_request_id() is None

    def test_beat_schedules_the_ping(self):
        assert settings.CELERY_BEAT_SCHEDULE["integrations.ping"]["task"] == "integrations.ping"


class TestProjectChecks:
    def test_openapi_schema_validates_without_warnings(self):
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)

    def test_check_deploy_is_clean_with_production_settings(self, tmp_path):
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DJANGO_DEBUG", "DJANGO_ENV_FILE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"}
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_DEBUG="false",
            SECRET_KEY="p" * 20 + "-production-like-secret-key-with-enough-entropy-1234567890",
            FIELD_ENCRYPTION_KEYS=settings.FIELD_ENCRYPTION_KEYS[0],
            ALLOWED_HOSTS="hub.example.com",
        )
        out = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "no issues" in out.stdout

    @staticmethod
    def _start(code="", **environ):
        """Django set up in a fresh process with `environ` over the test settings, then `code`."""
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", **environ}
        return subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
        )

    def test_a_malformed_boolean_stops_start_up(self):
        out = self._start(DJANGO_DEBUG="ture")
        assert out.returncode != 0
        assert "DJANGO_DEBUG must be true or false" in out.stderr

    def test_an_empty_database_url_as_env_example_has_it_is_sqlite_under_var(self):
        out = self._start("from django.conf import settings as s; print(s.DATABASES['default'])", DATABASE_URL="")
        assert out.returncode == 0, out.stderr
        assert "'django.db.backends.sqlite3'" in out.stdout and "db.sqlite3" in out.stdout

    @pytest.mark.parametrize("url", ["var/db.sqlite3", "//hub:S3cretPassw0rd@db.internal:5432/hub"])
    def test_a_database_url_without_a_scheme_stops_start_up_saying_so_and_not_its_password(self, url):
        out = self._start(DATABASE_URL=url)
        assert out.returncode != 0
        assert "DATABASE_URL must be a URL such as postgres://" in out.stderr
        assert "S3cretPassw0rd" not in out.stderr

    @pytest.mark.parametrize("url", ["127.0.0.1:6379", "http://127.0.0.1:6379/0"])
    def test_a_redis_url_redis_cannot_read_stops_start_up_saying_so(self, url):
        out = self._start(REDIS_URL=url)
        assert out.returncode != 0
        assert "REDIS_URL must start with redis://, rediss:// or unix://" in out.stderr

    def test_dev_superuser_is_created_once(self, capsys):
        call_command("create_dev_superuser")
        first = capsys.readouterr().out
        assert "password=" in first
        call_command("create_dev_superuser")
        assert "password=" not in capsys.readouterr().out
