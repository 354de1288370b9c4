"""`docker compose config` validates docker-compose.yml where the Compose plugin is installed."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose_command():
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    command = _compose_command()
    if command is None:
        pytest.skip(
            "the Docker Compose v2 plugin is not installed here (Debian bookworm ships only Compose v1, "
            "which does not know service_completed_successfully); tests/deploy/test_compose.py checks the file"
        )
    # A copy beside a .env made from .env.example: a fresh clone has no .env, and the test must not write one.
    (tmp_path / "docker-compose.yml").write_text((ROOT / "docker-compose.yml").read_text())
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    out = subprocess.run([*command, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
