"""#17.2 (issue table row 3): API tokens are stored hashed, expire, are named, listed and revoked by their owner."""

import datetime as dt
import hashlib
import importlib

import pytest
import time_machine
from django.apps import apps
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.auth.tokens import token_authenticate
from integrations.models import ApiToken

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
STATUS_URL = "/api/v1/integrations/status/"


def _login(user, **extra):
    resp = APIClient().post(
        "/api/v1/auth/token/", {"username": user.username, "password": PASSWORD, **extra}, format="json"
    )
    assert resp.status_code == 200, resp.json()
    return resp.json()


def _client(key):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return c


class TestStorage:
    def test_the_key_is_shown_once_and_only_its_prefix_and_digest_are_stored(self, user):
        body = _login(user, name="laptop")
        key = body["token"]
        row = ApiToken.objects.get(pk=body["id"])
        assert row.name == "laptop" and body["prefix"] == row.prefix == key[:12]
        assert row.digest == hashlib.sha256(key.encode()).hexdigest()
        stored = [str(v) for v in ApiToken.objects.filter(pk=row.pk).values().first().values()]
        assert key not in stored
        listed = _client(key).get("/api/v1/auth/tokens/").json()
        assert [t["id"] for t in listed] == [row.pk]
        assert "token" not in listed[0] and key not in str(listed)

    def test_each_login_makes_a_new_token(self, user):
        assert _login(user)["token"] != _login(user)["token"]

    def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_401(self, user):
        key = _login(user)["token"]
        forged = key[:12] + ("A" if key[12] != "A" else "B") + key[13:]
        resp = _client(forged).get(STATUS_URL)
        assert resp.status_code == 401 and resp.json()["error"] == "authentication_failed"


class TestExpiry:
    def test_a_token_expires_after_its_lifetime(self, user, settings):
        body = _login(user)
        expires = dt.datetime.fromisoformat(body["expires_at"])
        assert abs(expires - (timezone.now() + dt.timedelta(days=settings.API_TOKEN_TTL_DAYS))) < dt.timedelta(
            minutes=1
        )
        with time_machine.travel(expires + dt.timedelta(seconds=1), tick=False):
            resp = _client(body["token"]).get(STATUS_URL)
        assert resp.status_code == 401
        assert resp.json()["error"] == "token_expired"

    def test_the_client_may_ask_for_a_shorter_life_but_not_a_longer_one(self, user, settings):
        body = _login(user, expires_in_days=1)
        with time_machine.travel(timezone.now() + dt.timedelta(days=1, seconds=5), tick=False):
            assert _client(body["token"]).get(STATUS_URL).status_code == 401
        resp = APIClient().post(
            "/api/v1/auth/token/",
            {"username": user.username, "password": PASSWORD, "expires_in_days": settings.API_TOKEN_MAX_TTL_DAYS + 1},
            format="json",
        )
        assert resp.status_code == 400 and resp.json()["error"] == "invalid"

    def test_last_used_is_recorded(self, user):
        body = _login(user)
        assert body["last_used_at"] is None
        _client(body["token"]).get(STATUS_URL)
        assert ApiToken.objects.get(pk=body["id"]).last_used_at is not None


class TestOwnTokens:
    def test_create_list_and_revoke(self, user):
        key = _login(user, name="first")["token"]
        c = _client(key)
        resp = c.post("/api/v1/auth/tokens/", {"name": "ci"}, format="json")
        assert resp.status_code == 201
        second = resp.json()
        assert second["name"] == "ci" and second["token"].startswith("hub_")
        assert {t["name"] for t in c.get("/api/v1/auth/tokens/").json()} == {"first", "ci"}
        assert c.delete(f"/api/v1/auth/tokens/{second['id']}/").status_code == 204
        assert _client(second["token"]).get(STATUS_URL).status_code == 401
        assert c.get(STATUS_URL).status_code == 200

    def test_another_users_token_is_404_and_stays_alive(self, user, other_user):
        mine = _login(user)["token"]
        theirs = _login(other_user)
        assert _client(mine).delete(f"/api/v1/auth/tokens/{theirs['id']}/").status_code == 404
        assert theirs["id"] not in [t["id"] for t in _client(mine).get("/api/v1/auth/tokens/").json()]
        assert _client(theirs["token"]).get(STATUS_URL).status_code == 200

    def test_revoking_needs_authentication(self, user):
        body = _login(user)
        assert APIClient().delete(f"/api/v1/auth/tokens/{body['id']}/").status_code == 401


class TestCachedTokens:
    """A token is read from the database once, then from the cache; revoking or deactivating acts at once."""

    @pytest.mark.redis
    def test_a_token_in_use_reads_no_database_row_to_authenticate(self, user, django_assert_num_queries):
        key = _login(user)["token"]
        token_authenticate(key=key)
        with django_assert_num_queries(0):
            assert token_authenticate(key=key).user == user

    def test_a_revoked_token_is_refused_at_once_though_it_was_just_used(self, user):
        key = _login(user, name="first")["token"]
        body = _client(key).post("/api/v1/auth/tokens/", {"name": "ci"}, format="json").json()
        assert _client(body["token"]).get(STATUS_URL).status_code == 200  # now cached
        assert _client(key).delete(f"/api/v1/auth/tokens/{body['id']}/").status_code == 204
        assert _client(body["token"]).get(STATUS_URL).status_code == 401

    def test_a_deactivated_users_tokens_are_refused_at_once(self, user):
        key = _login(user)["token"]
        assert _client(key).get(STATUS_URL).status_code == 200
        user.is_active = False
        user.save()
        assert _client(key).get(STATUS_URL).status_code == 401

    def test_a_token_staff_delete_in_admin_is_refused_at_once(self, user):
        key = _login(user)["token"]
        assert _client(key).get(STATUS_URL).status_code == 200
        ApiToken.objects.filter(user=user).delete()
        assert _client(key).get(STATUS_URL).status_code == 401

    def test_without_the_cache_a_token_authenticates_from_the_database(self, user, monkeypatch):
        from django.core.cache import cache
        from redis.exceptions import ConnectionError as RedisConnectionError

        key = _login(user)["token"]

        def down(*args, **kwargs):
            raise RedisConnectionError("Redis is down")

        for operation in ("get", "set", "delete_many"):
            monkeypatch.setattr(cache, operation, down)
        assert _client(key).get("/api/v1/auth/tokens/").status_code == 200
        token_id = ApiToken.objects.get(user=user).pk
        assert _client(key).delete(f"/api/v1/auth/tokens/{token_id}/").status_code == 204

    def test_without_redis_a_token_deleted_by_another_process_is_refused_at_once(self, user, settings):
        # make run: Django's cache is each process's own memory, and an erasure deletes tokens in the worker.
        settings.REDIS_URL = ""
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        key = _login(user)["token"]
        assert _client(key).get(STATUS_URL).status_code == 200
        # Deleted without this process's signals, as another process's delete looks from here.
        ApiToken.objects.filter(user=user)._raw_delete(connection.alias)
        assert _client(key).get(STATUS_URL).status_code == 401

    def test_a_cached_token_still_expires_on_time(self, user):
        body = _login(user, expires_in_days=1)
        assert _client(body["token"]).get(STATUS_URL).status_code == 200
        with time_machine.travel(timezone.now() + dt.timedelta(days=1, seconds=5), tick=False):
            resp = _client(body["token"]).get(STATUS_URL)
        assert resp.status_code == 401 and resp.json()["error"] == "token_expired"


class TestAdmin:
    def test_staff_see_tokens_without_any_secret(self, client, staff_user, user):
        key = _login(user, name="phone")["token"]
        client.force_login(staff_user)
        page = client.get("/admin/integrations/apitoken/")
        assert page.status_code == 200
        html = page.content.decode()
        assert "phone" in html and key[:12] in html
        assert key not in html and ApiToken.objects.get().digest not in html
        assert client.get("/admin/authtoken/tokenproxy/").status_code == 404


@pytest.mark.postgres  # runs the migration inside the test's transaction, which SQLite's schema editor refuses
class TestMigration:
    def test_old_plain_tokens_are_hashed_and_keep_working(self, user):
        # The table rest_framework.authtoken left behind, with one live plain key.
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp with time zone,"
                " user_id integer NOT NULL)"
                if connection.vendor == "postgresql"
                else "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created datetime, user_id integer)"
            )
            cursor.execute(
                "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
                ["0123456789abcdef0123456789abcdef01234567", timezone.now(), user.pk],
            )
        migration = importlib.import_module("integrations.migrations.0009_api_tokens")
        with connection.schema_editor() as editor:
            migration.move_plain_tokens(apps, editor)
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM authtoken_token")
            assert cursor.fetchone()[0] == 0
        row = ApiToken.objects.get(user=user)
        assert row.name == "migrated" and row.expires_at is not None
        resp = _client("0123456789abcdef0123456789abcdef01234567").get(STATUS_URL)
        assert resp.status_code == 200
