"""docker-compose.yml, read as data: the stack a newcomer starts must have the shape README promises.

Builds nothing. `docker compose config` (tests/deploy/test_compose_cli.py) validates the same file
against Compose's own schema where the plugin is installed.
"""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("web", "worker", "beat")
WEB_COMMAND = ["gunicorn", "-c", "config/gunicorn.conf.py", "config.asgi:application"]


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_the_stack_has_migrate_web_worker_beat_db_and_redis(services):
    assert set(services) == {"migrate", *APP_SERVICES, "db", "redis"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_a_completed_migration_and_healthy_stores(services, name):
    depends = services[name]["depends_on"]
    assert depends["migrate"] == {"condition": "service_completed_successfully"}
    assert depends["db"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}


def test_migrate_runs_once_and_only_migrates(services):
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"
    assert "migrate" not in migrate["depends_on"]
    assert migrate["depends_on"]["db"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_restart_and_share_one_image(services, name):
    service = services[name]
    assert service["restart"] == "unless-stopped"
    assert service["image"] == services["migrate"]["image"]
    assert service["env_file"] == ".env"


@pytest.mark.parametrize("name", [*APP_SERVICES, "db", "redis"])
def test_every_long_running_service_has_a_healthcheck(services, name):
    check = services[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert {"interval", "timeout", "retries"} <= set(check)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_healthchecks_use_the_shipped_script_for_their_role(services, name):
    assert services[name]["healthcheck"]["test"] == ["CMD", "python", "scripts/healthcheck.py", name]


def test_web_runs_the_one_asgi_server_command(services):
    assert services["web"]["command"] == WEB_COMMAND
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "config.asgi:application"]' in dockerfile
    assert (
        "web: .venv/bin/gunicorn -c config/gunicorn.conf.py config.asgi:application"
        in (ROOT / "Procfile.dev").read_text()
    )


def test_worker_and_beat_run_celery_for_every_queue(services):
    worker = services["worker"]["command"]
    assert worker[:4] == ["celery", "-A", "config", "worker"]
    queues = worker[worker.index("--queues") + 1].split(",")
    assert set(queues) == {"default", "payments", "messaging", "ai", "documents", "scheduling", "travel"}
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]


def test_third_party_images_are_pinned_to_a_patch_release(services):
    for name in ("db", "redis"):
        image = services[name]["image"]
        tag = image.split(":", 1)[1]
        assert tag.count(".") >= 1, f"{name} image {image} floats on a major version"


def test_the_image_runs_as_an_unprivileged_user_from_a_pinned_base():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "python:3.11" in dockerfile and "@sha256:" in dockerfile
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2  # build and runtime stages
    assert "\nUSER hub\n" in dockerfile
    assert "collectstatic" in dockerfile


def test_the_build_context_leaves_out_the_venv_dev_data_and_secrets():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", "var", ".env", ".git"):
        assert entry in ignored
