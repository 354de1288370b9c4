"""Secret settings from a file (NAME_FILE) or from AWS Secrets Manager, besides the environment."""

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from moto import mock_aws

from config.settings._secrets import SecretsMapping, apply_secrets_manager
from integrations.audit.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]


def _settings_value(name, **env):
    """Load the real settings in a fresh process with `env` and print one setting."""
    environ = {k: v for k, v in os.environ.items() if k not in ("STRIPE_SECRET_KEY", "DJANGO_ENV_FILE")}
    environ.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    code = f"from django.conf import settings; print(repr(settings.{name}))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


def test_a_secret_comes_from_the_file_named_by_name_file_without_its_newline(tmp_path):
    secret = tmp_path / "stripe_key"
    secret.write_text("sk_test_from_file\n")
    run = _settings_value("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY_FILE=str(secret), STRIPE_SECRET_KEY="sk_env")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "'sk_test_from_file'"


def test_an_unreadable_secret_file_stops_start_up_naming_the_variable(tmp_path):
    mapping = SecretsMapping({"STRIPE_SECRET_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ImproperlyConfigured, match="STRIPE_SECRET_KEY_FILE"):
        mapping["STRIPE_SECRET_KEY"]


@pytest.fixture
def secret_arn():
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(
            Name="hub/prod", SecretString=json.dumps({"STRIPE_SECRET_KEY": "sk_from_sm", "TWILIO_AUTH_TOKEN": "tw"})
        )["ARN"]
        yield client, arn


def test_secrets_manager_fills_only_what_the_environment_does_not_set(secret_arn):
    _, arn = secret_arn
    environ = {"SECRETS_MANAGER_ARN": arn, "TWILIO_AUTH_TOKEN": "set-by-hand"}
    assert apply_secrets_manager(environ) == ["STRIPE_SECRET_KEY"]
    assert environ["STRIPE_SECRET_KEY"] == "sk_from_sm" and environ["TWILIO_AUTH_TOKEN"] == "set-by-hand"


def test_a_secret_that_is_not_a_json_object_stops_start_up(secret_arn):
    client, _ = secret_arn
    arn = client.create_secret(Name="hub/bad", SecretString="just-a-string")["ARN"]
    with pytest.raises(ImproperlyConfigured, match="JSON object"):
        apply_secrets_manager({"SECRETS_MANAGER_ARN": arn})


@pytest.mark.django_db
def test_refresh_secrets_names_what_changed_but_never_a_value(secret_arn, settings, monkeypatch, capsys):
    client, arn = secret_arn
    monkeypatch.setenv("SECRETS_MANAGER_ARN", arn)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_from_sm")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    settings.SECRETS_FROM_MANAGER = ["STRIPE_SECRET_KEY"]
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"STRIPE_SECRET_KEY": "sk_rotated"}))
    call_command("refresh_secrets")
    out = capsys.readouterr().out
    assert "changed: STRIPE_SECRET_KEY" in out and "Restart" in out
    assert "sk_rotated" not in out and "sk_from_sm" not in out


@pytest.mark.django_db
def test_refresh_secrets_leaves_an_audit_event_with_names_never_values(secret_arn, settings, monkeypatch):
    client, arn = secret_arn
    monkeypatch.setenv("SECRETS_MANAGER_ARN", arn)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_from_sm")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    settings.SECRETS_FROM_MANAGER = ["STRIPE_SECRET_KEY"]
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"STRIPE_SECRET_KEY": "sk_rotated", "NEW_ONE": "v"}))

    call_command("refresh_secrets")

    event = AuditEvent.objects.get(action="secrets.refresh")
    assert (event.outcome, event.actor_label, event.target_type) == ("ok", "system", "secrets")
    assert event.details["changed"] == ["STRIPE_SECRET_KEY"] and event.details["added"] == ["NEW_ONE"]
    assert "sk_rotated" not in json.dumps(event.details) and "sk_from_sm" not in json.dumps(event.details)


@pytest.mark.django_db
def test_a_refresh_that_cannot_read_the_secret_is_audited_as_failed(secret_arn, monkeypatch):
    _, arn = secret_arn
    monkeypatch.setenv("SECRETS_MANAGER_ARN", arn.replace("hub/prod", "hub/missing"))
    with pytest.raises(CommandError):
        call_command("refresh_secrets")
    assert AuditEvent.objects.get(action="secrets.refresh").outcome == "failed"
