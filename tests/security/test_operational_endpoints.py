"""#17.4 (issue table rows 4 and 7): /metrics is private and adds up every worker; /readyz names failures only."""

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


class TestMetricsAccess:
    def test_anonymous_is_401(self, client, settings):
        settings.METRICS_TOKEN = "s3cret-metrics"
        resp = client.get("/metrics")
        assert resp.status_code == 401
        assert resp.json()["error"] == "not_authenticated"
        assert b"hub_" not in resp.content and b"django_http" not in resp.content

    def test_nothing_configured_opens_it_to_nobody(self, client, settings):
        settings.METRICS_TOKEN = ""
        settings.METRICS_ALLOWED_NETWORKS = []
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401

    def test_the_bearer_token_opens_it(self, client, settings):
        settings.METRICS_TOKEN = "s3cret-metrics"
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics")
        assert resp.status_code == 200
        assert b"django_http_requests" in resp.content

    def test_an_allow_listed_network_opens_it(self, client, settings):
        settings.METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
        assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="10.21.3.4").status_code == 401

    def test_a_forged_forwarded_for_does_not_open_it(self, client, settings):
        settings.METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
        settings.TRUSTED_PROXY_COUNT = 1
        resp = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.20.0.1, 198.51.100.4")
        assert resp.status_code == 401
        resp = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.4, 10.20.0.1")
        assert resp.status_code == 200

    @pytest.mark.parametrize("networks", ["10.0.0.0/33", "10.20.0.0/16,office"])
    def test_a_network_that_is_not_one_stops_start_up_rather_than_failing_every_scrape(self, networks):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "METRICS_ALLOWED_NETWORKS": networks}
        setup = "import django; django.setup()"
        out = subprocess.run([sys.executable, "-c", setup], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode != 0
        assert "METRICS_ALLOWED_NETWORKS: " in out.stderr and "is not an IP address or CIDR network" in out.stderr


class TestReadyz:
    @pytest.fixture
    def broker_down(self, monkeypatch):
        # A port in this suite's range where nothing listens: a real connection refusal.
        monkeypatch.setattr(celery_app.conf, "broker_write_url", "redis://127.0.0.1:18899/0")

    def test_anonymous_callers_get_the_names_of_failing_checks_only(self, client, broker_down, caplog):
        resp = client.get("/readyz")
        assert resp.status_code == 503
        body = resp.json()
        assert body == {"status": "unavailable", "failed": ["broker", "worker"]}
        assert "18899" not in resp.content.decode()
        assert any("18899" in r.getMessage() for r in caplog.records), "the reason goes to the log"

    def test_staff_see_the_reasons(self, staff_client, broker_down):
        body = staff_client.get("/readyz").json()
        assert "18899" in body["checks"]["broker"]["error"]

    @pytest.mark.postgres
    @pytest.mark.parametrize("credential", ["session", "token"])
    def test_the_database_down_is_a_503_naming_it_for_a_caller_with_a_session_or_a_token_too(
        self, transactional_db, client, staff_user, monkeypatch, credential
    ):
        from django.db import connection

        from integrations.auth.tokens import token_create

        if credential == "session":
            client.force_login(staff_user)
        else:
            _, key = token_create(user=staff_user)
            client.defaults["HTTP_AUTHORIZATION"] = f"Token {key}"
        connection.close()
        monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(connection.settings_dict, "PORT", "18897")
        try:
            resp = client.get("/readyz")
        finally:
            connection.close()
        assert resp.status_code == 503
        assert "database" in resp.json()["failed"] and "checks" not in resp.json()  # staff cannot be told apart


def _free_port():
    for port in range(18850, 18899):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 18850-18898")


def _healthz_count(text):
    total = 0
    for family in text_string_to_metric_families(text):
        if family.name == "django_http_responses_total_by_status_view_method":
            total += sum(s.value for s in family.samples if s.labels.get("view") == "healthz")
    return total


class TestMultiprocess:
    def test_n_requests_over_three_gunicorn_workers_read_n(self, tmp_path):
        port = _free_port()
        prom_dir = tmp_path / "prom"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
            "METRICS_TOKEN": "tok",
            # The production server exactly as shipped (config/gunicorn.conf.py, uvicorn workers, preload):
            # its hooks, not a test's, must empty stale samples and count every worker.
            "WEB_CONCURRENCY": "3",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "GUNICORN_TIMEOUT": "90",
            "DATABASE_POOL": "false",  # the test settings' database is SQLite
        }
        # Stale samples from a "previous run" must not be added in: on_starting empties the directory.
        prom_dir.mkdir()
        (prom_dir / "counter_999999.db").write_bytes(b"\0" * 16)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "config/gunicorn.conf.py",
                "config.asgi:application",
            ],  # fmt: skip
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Bearer tok"}
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    # A fresh worker loads the URLconf (every provider SDK) on its first request: slow on a busy machine.
                    if requests.get(f"{base}/metrics", headers=auth, timeout=60).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    pass
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)

            # Each worker's ASGI lifespan warm-up serves itself one /healthz before its first client
            # (config/warmup.py), so once all three have warmed up, three processes hold a count each.
            def workers_counted():
                return {p.name.split("_")[-1] for p in prom_dir.glob("counter_*.db")} - {"999999.db"}

            while len(workers_counted()) < 3:
                assert time.monotonic() < deadline + 240, f"only {len(workers_counted())} workers started"
                time.sleep(0.2)
            n = 30
            with ThreadPoolExecutor(max_workers=9) as pool:
                codes = list(pool.map(lambda _: requests.get(f"{base}/healthz", timeout=90).status_code, range(n)))
            assert codes == [200] * n
            assert not (prom_dir / "counter_999999.db").exists()
            text = requests.get(f"{base}/metrics", headers=auth, timeout=90).text
            # The sum over every worker's file: their three warm-ups and the n requests, wherever they went.
            assert _healthz_count(text) == n + 3
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
