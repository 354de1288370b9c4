"""Encrypted credentials: ciphertext at rest, key rotation, loud start-up on a bad key."""

import os
import subprocess
import sys
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.exceptions import FieldError, ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection

from integrations.fields import DecryptionError, encrypted_fields
from integrations.models import Connection
from tests.integrations.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def raw_tokens(pk):
    table = Connection._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT access_token, refresh_token FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()


class TestEncryptedField:
    def test_the_raw_column_never_contains_the_plaintext(self):
        conn = ConnectionFactory(access_token="ya29.super-secret-access", refresh_token="1//super-secret-refresh")
        access, refresh = raw_tokens(conn.pk)
        assert "super-secret" not in access and "super-secret" not in refresh
        assert access.startswith("gAAAAA") and refresh.startswith("gAAAAA")  # Fernet tokens

    def test_tokens_round_trip_through_save_update_and_bulk_update(self):
        conn = ConnectionFactory(access_token="first")
        assert Connection.objects.get(pk=conn.pk).access_token == "first"

        Connection.objects.filter(pk=conn.pk).update(access_token="second")
        assert "second" not in raw_tokens(conn.pk)[0]
        conn.refresh_from_db()
        assert conn.access_token == "second"

        conn.access_token = "third"
        Connection.objects.bulk_update([conn], ["access_token"])
        assert "third" not in raw_tokens(conn.pk)[0]
        assert Connection.objects.get(pk=conn.pk).access_token == "third"

    def test_the_same_secret_encrypts_differently_each_time(self):
        a = ConnectionFactory(access_token="same")
        b = ConnectionFactory(access_token="same")
        assert raw_tokens(a.pk)[0] != raw_tokens(b.pk)[0]

    def test_an_empty_token_stays_empty(self):
        conn = ConnectionFactory(refresh_token="")
        assert raw_tokens(conn.pk)[1] == ""
        conn.refresh_from_db()
        assert conn.refresh_token == ""

    def test_lookups_on_an_encrypted_field_are_refused_with_a_clear_error(self):
        with pytest.raises(FieldError, match="does not support the 'exact' lookup"):
            Connection.objects.filter(access_token="ya29.x")
        with pytest.raises(FieldError):
            Connection.objects.filter(refresh_token__startswith="1//")
        assert Connection.objects.filter(access_token__isnull=True).count() == 0

    def test_a_value_written_with_an_old_key_decrypts_while_that_key_is_listed(self, settings):
        settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
        conn = ConnectionFactory(access_token="from-the-old-key")
        settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
        assert Connection.objects.get(pk=conn.pk).access_token == "from-the-old-key"
        settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
        with pytest.raises(DecryptionError, match="FIELD_ENCRYPTION_KEYS"):
            Connection.objects.get(pk=conn.pk)


class TestRotation:
    def test_rotation_re_encrypts_everything_with_the_new_first_key(self, settings):
        settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
        conns = [ConnectionFactory(access_token=f"access-{i}", refresh_token=f"refresh-{i}") for i in range(3)]
        before = {c.pk: raw_tokens(c.pk) for c in conns}

        settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
        out = StringIO()
        call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out)
        assert "integrations.Connection (access_token, refresh_token): re-encrypted 3 row(s)" in out.getvalue()

        new = Fernet(NEW_KEY.encode())
        for i, c in enumerate(conns):
            access, refresh = raw_tokens(c.pk)
            assert (access, refresh) != before[c.pk]
            assert new.decrypt(access.encode()).decode() == f"access-{i}"
            assert new.decrypt(refresh.encode()).decode() == f"refresh-{i}"

        # The old key can now be dropped.
        settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
        assert sorted(Connection.objects.values_list("access_token", flat=True)) == ["access-0", "access-1", "access-2"]

    @pytest.mark.parametrize("size", ["0", "-1"])
    def test_a_batch_size_below_one_is_refused_not_reported_done_with_nothing_re_encrypted(self, size):
        ConnectionFactory(access_token="access")
        out = StringIO()
        with pytest.raises(CommandError, match="--batch-size: must be 1 or more"):
            call_command("rotate_encryption_keys", "--batch-size", size, stdout=out)
        assert "Done" not in out.getvalue()

    def test_rotation_discovers_encrypted_fields_through_the_app_registry(self):
        assert (Connection, ["access_token", "refresh_token"]) in encrypted_fields()


class TestStartUp:
    def run_setup(self, keys):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "FIELD_ENCRYPTION_KEYS": keys}
        return subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            cwd=django_settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
        )

    def test_a_malformed_key_stops_start_up_naming_the_variable(self):
        out = self.run_setup("not-a-fernet-key")
        assert out.returncode != 0
        assert "ImproperlyConfigured" in out.stderr
        assert "FIELD_ENCRYPTION_KEYS: key #1 is not a valid Fernet key" in out.stderr
        assert "not-a-fernet-key" not in out.stderr  # a key is never echoed, even a broken one

    def test_a_malformed_second_key_is_named_by_position(self):
        out = self.run_setup(f"{NEW_KEY},broken")
        assert out.returncode != 0
        assert "FIELD_ENCRYPTION_KEYS: key #2" in out.stderr

    def test_good_keys_start_up(self):
        assert self.run_setup(f"{NEW_KEY},{OLD_KEY}").returncode == 0


class TestConnectionModel:
    def test_the_provider_must_be_one_the_registry_knows(self):
        conn = ConnectionFactory.build(owner=ConnectionFactory().owner, provider="myspace")
        with pytest.raises(ValidationError, match="Unknown provider 'myspace'"):
            conn.full_clean()

    def test_one_connection_per_owner_provider_and_account(self):
        conn = ConnectionFactory()
        with pytest.raises(IntegrityError):
            ConnectionFactory(owner=conn.owner, provider=conn.provider, account=conn.account)

    def test_its_text_form_never_includes_a_token(self):
        conn = ConnectionFactory(access_token="ya29.visible?")
        assert "ya29" not in str(conn) and "ya29" not in repr(conn)


class TestConnectionAdmin:
    def test_admin_shows_whether_tokens_are_set_but_never_their_values(self, client, staff_user):
        conn = ConnectionFactory(access_token="ya29.never-shown", refresh_token="")
        client.force_login(staff_user)
        listing = client.get("/admin/integrations/connection/")
        detail = client.get(f"/admin/integrations/connection/{conn.pk}/change/")
        for resp in (listing, detail):
            assert resp.status_code == 200
            assert b"ya29.never-shown" not in resp.content
            assert b"not set" in resp.content
        assert b"gAAAAA" not in detail.content
