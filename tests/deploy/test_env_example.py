"""`.env.example` names every variable the settings read (issue 16: the README's newcomer path needs no knowledge it
does not give), so a new setting cannot land without its line."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r"\b(?:env(?:\.[a-z_]+)?|env_bool)\(\s*\"([A-Z][A-Z0-9_]+)\"")


def _read_by_settings():
    names = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        names |= set(READ.findall(path.read_text()))
    return names


def test_every_variable_the_settings_read_is_named_in_env_example():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    read = _read_by_settings()
    assert len(read) > 200  # the pattern still finds the settings' reads
    assert sorted(read - named) == []


def test_a_copy_of_env_example_with_its_two_secrets_filled_starts_and_passes_check_deploy():
    """README's compose path: `cp .env.example .env`, fill SECRET_KEY and FIELD_ENCRYPTION_KEYS; compose's env_file
    then passes every line on, the empty ones as empty values."""
    import os
    import subprocess
    import sys

    example = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    example.update(
        SECRET_KEY="an-example-secret-key-for-this-test-only-0123456789abcdefghij",
        FIELD_ENCRYPTION_KEYS="q8yF3v2bJm0nN4r6rU1oYbq2j8c8V2mZr1aXlN0l0Ws=",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **example}
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no issues" in out.stdout
