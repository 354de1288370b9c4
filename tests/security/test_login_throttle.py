"""#17.1: the token endpoint and the admin login lock out per IP and per username, 429 + Retry-After."""

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.models import Alert

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
TOKEN_URL = "/api/v1/auth/token/"


def _token_login(username, password, ip="203.0.113.7"):
    return APIClient(REMOTE_ADDR=ip).post(TOKEN_URL, {"username": username, "password": password}, format="json")


def _admin_login(client, username, password):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


class TestTokenEndpoint:
    def test_the_right_password_after_many_wrong_ones_is_refused_with_429(self, user):
        for _ in range(60):
            resp = _token_login(user.username, "wrong")
            assert resp.status_code in (400, 429)
        resp = _token_login(user.username, PASSWORD)
        assert resp.status_code == 429
        body = resp.json()
        assert body["error"] == "login_locked"
        assert int(resp["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds() == body["retry_after"]

    def test_the_limit_counts_failures_and_the_next_one_is_429(self, user):
        limit = settings.AXES_FAILURE_LIMIT
        codes = [_token_login(user.username, "wrong").status_code for _ in range(limit)]
        assert codes[:-1] == [400] * (limit - 1)
        assert codes[-1] == 429

    def test_per_username_from_many_addresses(self, user):
        for i in range(settings.AXES_FAILURE_LIMIT):
            _token_login(user.username, "wrong", ip=f"198.51.100.{i + 1}")
        assert _token_login(user.username, PASSWORD, ip="192.0.2.200").status_code == 429

    def test_per_address_over_many_usernames(self, user):
        for i in range(settings.AXES_FAILURE_LIMIT):
            _token_login(f"nobody{i}", "wrong", ip="198.51.100.9")
        assert _token_login(user.username, PASSWORD, ip="198.51.100.9").status_code == 429
        # Another address and the same user: still allowed (the user was not the target).
        assert _token_login(user.username, PASSWORD, ip="198.51.100.10").status_code == 200

    def test_the_lock_lifts_after_the_cool_off(self, user):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            _token_login(user.username, "wrong")
        later = timezone.now() + settings.AXES_COOLOFF_TIME + dt.timedelta(seconds=1)
        with time_machine.travel(later, tick=False):
            assert _token_login(user.username, PASSWORD).status_code == 200

    def test_a_success_resets_the_count(self, user):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            _token_login(user.username, "wrong")
        assert _token_login(user.username, PASSWORD).status_code == 200
        assert _token_login(user.username, "wrong").status_code == 400

    def test_a_lockout_alerts_staff_and_a_spike_counts_up(self, user, other_user):
        for u in (user, other_user):
            for i in range(settings.AXES_FAILURE_LIMIT):
                _token_login(u.username, "wrong", ip=f"192.0.2.{i + 1}")
        alert = Alert.objects.get(kind=Alert.Kind.SECURITY, resolved_at__isnull=True)
        assert alert.severity == Alert.Severity.CRITICAL
        assert alert.occurrences >= 2

    def test_a_proxy_forwarded_address_is_used_only_for_trusted_hops(self, user, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        # The attacker rotates the left-most (client-claimed) entry; the proxy's own hop stays.
        for i in range(settings.AXES_FAILURE_LIMIT):
            APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"1.1.1.{i}, 203.0.113.50").post(
                TOKEN_URL, {"username": f"x{i}", "password": "no"}, format="json"
            )
        resp = APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.50").post(
            TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json"
        )
        assert resp.status_code == 429


class TestAdminLogin:
    def test_the_right_password_after_30_wrong_ones_is_refused(self, client, staff_user):
        for _ in range(30):
            _admin_login(client, staff_user.username, "wrong")
        resp = _admin_login(client, staff_user.username, PASSWORD)
        assert resp.status_code == 429
        assert int(resp["Retry-After"]) > 0
        assert "_auth_user_id" not in client.session
        assert client.get("/admin/").status_code == 302  # still not logged in

    def test_a_few_mistakes_then_the_right_password_logs_in(self, client, staff_user):
        for _ in range(3):
            assert _admin_login(client, staff_user.username, "wrong").status_code == 200
        assert _admin_login(client, staff_user.username, PASSWORD).status_code == 302
        assert client.get("/admin/").status_code == 200

    def test_the_admin_and_the_token_endpoint_share_the_count(self, client, staff_user):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            _admin_login(client, staff_user.username, "wrong")
        assert _token_login(staff_user.username, PASSWORD, ip="192.0.2.99").status_code == 429
