"""`docker compose config` validates docker-compose.yml where the Compose plugin is installed."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose_command():
    """`docker compose` (the v2 plugin), else Debian's docker-compose 1.29, which validates the same fields here
    (depends_on conditions, healthchecks, restart policies); .ci/run installs it with apt."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True)
        version = tuple(int(p) for p in probe.stdout.strip().split(".")[:2] if p.isdigit())
        if probe.returncode == 0 and version >= (1, 29):  # 1.29 added service_completed_successfully
            return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    command = _compose_command()
    if command is None:
        pytest.skip(
            "neither the Docker Compose v2 plugin nor docker-compose >= 1.29 is installed here (.ci/run installs "
            "Debian's docker-compose); tests/deploy/test_compose.py checks the file by parsing it"
        )
    # A copy beside a .env made from .env.example: a fresh clone has no .env, and the test must not write one.
    (tmp_path / "docker-compose.yml").write_text((ROOT / "docker-compose.yml").read_text())
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    out = subprocess.run([*command, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_docker_compose_config_refuses_a_broken_dependency(tmp_path):
    """The validator is not a no-op: the same file with an unknown depends_on condition fails."""
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose here (see above)")
    text = (ROOT / "docker-compose.yml").read_text()
    assert "service_completed_successfully" in text
    (tmp_path / "docker-compose.yml").write_text(text.replace("service_completed_successfully", "service_finished"))
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    out = subprocess.run([*command, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0 and "service_finished" in out.stderr
