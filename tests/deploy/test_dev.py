"""The development path: make run's pieces, manage.py's env file, the dev admin, the landing page."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from config.log_filters import RoutineTasksAtDebug

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import dev_run  # noqa: E402
import install  # noqa: E402

pytestmark = pytest.mark.django_db


class TestLandingPage:
    def test_the_root_links_admin_api_docs_and_health(self, client):
        response = client.get("/")
        assert response.status_code == 200
        html = response.content.decode()
        for href in ('href="/admin/"', 'href="/api/docs/"', 'href="/readyz"', 'href="/healthz"'):
            assert href in html

    def test_it_answers_head_but_not_post(self, client):
        assert client.head("/").status_code == 200
        assert client.post("/").status_code == 405

    def test_an_unknown_page_is_still_a_plain_404(self, client):
        response = client.get("/no-such-page")
        assert response.status_code == 404
        assert b"URLconf" not in response.content


class TestDevAdmin:
    def test_it_is_created_once_with_a_printed_password(self, capsys):
        call_command("dev_admin")
        first = capsys.readouterr().out
        password = first.split("password=")[1].split()[0]
        assert get_user_model().objects.get(username="admin").check_password(password)
        assert "make superuser" in first  # how to get a new one, said when the password is shown

        call_command("dev_admin")
        second = capsys.readouterr().out
        assert "password=" not in second
        assert "make superuser" in second

    def test_reset_sets_a_new_password_that_works(self, capsys):
        call_command("dev_admin")
        old = capsys.readouterr().out.split("password=")[1].split()[0]
        call_command("dev_admin", "--reset")
        new = capsys.readouterr().out.split("password=")[1].split()[0]
        admin = get_user_model().objects.get(username="admin")
        assert new != old
        assert admin.check_password(new) and not admin.check_password(old)
        assert admin.is_active and admin.is_staff and admin.is_superuser

    def test_reset_creates_the_admin_when_there_is_none(self, capsys):
        call_command("dev_admin", "--reset", "--username", "ops")
        assert "Dev admin created: username=ops" in capsys.readouterr().out


class TestManagePyEnvFile:
    def _run(self, tmp_path, env_extra, *, dev_env=True):
        """manage.py from a copy of the checkout's entry point, beside a var/dev.env or not."""
        (tmp_path / "var").mkdir()
        if dev_env:
            (tmp_path / "var" / "dev.env").write_text("X=1\n")
        (tmp_path / "manage.py").write_text((ROOT / "manage.py").read_text())
        # A stand-in for Django's command runner: report what manage.py set up, run nothing.
        fake = tmp_path / "django" / "core" / "management"
        fake.mkdir(parents=True)
        for package in (tmp_path / "django", tmp_path / "django" / "core"):
            (package / "__init__.py").write_text("")
        (fake / "__init__.py").write_text(
            "import os\ndef execute_from_command_line(argv):\n    print(os.environ.get('DJANGO_ENV_FILE', '<unset>'))\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_ENV_FILE"}
        env.update(env_extra, PYTHONPATH=str(tmp_path))
        return subprocess.run(
            [sys.executable, "manage.py", "check"], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    def test_it_uses_var_dev_env_by_itself_and_says_so(self, tmp_path):
        out = self._run(tmp_path, {})
        assert out.stdout.strip() == "var/dev.env"
        assert "var/dev.env" in out.stderr

    def test_an_explicit_choice_wins_even_an_empty_one(self, tmp_path):
        out = self._run(tmp_path, {"DJANGO_ENV_FILE": ""})
        assert out.stdout.strip() == ""
        assert "var/dev.env" not in out.stderr

    def test_without_var_dev_env_nothing_is_loaded_or_said(self, tmp_path):
        out = self._run(tmp_path, {}, dev_env=False)
        assert out.stdout.strip() == "<unset>"
        assert out.stderr == ""


class TestInstallStamp:
    def test_the_hash_follows_included_files(self, tmp_path):
        base = tmp_path / "requirements.txt"
        dev = tmp_path / "requirements-dev.txt"
        base.write_text("django==5.2.19\n")
        dev.write_text("-r requirements.txt\npytest==9.2.0\n")
        before = install.requirements_hash(dev, sys.executable)
        assert install.requirements_hash(dev, sys.executable) == before
        base.write_text("django==5.2.20\n")
        assert install.requirements_hash(dev, sys.executable) != before

    def test_touching_a_file_without_changing_it_changes_nothing(self, tmp_path):
        base = tmp_path / "requirements.txt"
        base.write_text("django==5.2.19\n")
        before = install.requirements_hash(base, sys.executable)
        os.utime(base, (1, 1))
        assert install.requirements_hash(base, sys.executable) == before

    def test_the_repository_files_parse(self):
        files = [p.name for p in install.requirement_files(ROOT / "requirements-dev.txt")]
        assert files == ["requirements-dev.txt", "requirements.txt"]


class TestProcfile:
    def test_web_worker_and_beat_in_that_order(self):
        processes = dev_run.parse_procfile(ROOT / "Procfile.dev")
        assert [name for name, _ in processes] == ["web", "worker", "beat"]

    def test_a_malformed_line_is_refused_with_its_text(self, tmp_path):
        procfile = tmp_path / "Procfile"
        procfile.write_text("web gunicorn\n")
        with pytest.raises(SystemExit, match="web gunicorn"):
            dev_run.parse_procfile(procfile)

    @pytest.mark.parametrize(("level", "expected"), [(None, "INFO"), ("DEBUG", "DEBUG")])
    def test_worker_and_beat_log_at_log_level_so_debug_shows_the_heartbeat_lines(self, monkeypatch, level, expected):
        monkeypatch.delenv("LOG_LEVEL", raising=False)
        if level:
            monkeypatch.setenv("LOG_LEVEL", level)
        env = dev_run.dev_environment("127.0.0.1", 8010)
        commands = dict(dev_run.parse_procfile(ROOT / "Procfile.dev"))
        for name in ("worker", "beat"):
            argv = dev_run.command_argv(commands[name], env)
            assert argv[argv.index("--loglevel") + 1] == expected

    def test_the_dev_environment_has_one_web_process_on_the_chosen_port(self, monkeypatch):
        monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
        monkeypatch.delenv("DJANGO_ENV_FILE", raising=False)
        env = dev_run.dev_environment("127.0.0.1", 8010)
        assert (env["HOST"], env["PORT"], env["WEB_CONCURRENCY"]) == ("127.0.0.1", "8010", "1")
        assert env["DJANGO_ENV_FILE"] == "var/dev.env"


class TestGunicornConfig:
    def _load(self, monkeypatch, **env):
        for key in ("HOST", "PORT", "WEB_CONCURRENCY", "DATABASE_POOL"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        namespace = {}
        exec((ROOT / "config" / "gunicorn.conf.py").read_text(), namespace)  # noqa: S102 - gunicorn does the same
        return namespace

    def test_bind_and_workers_come_from_the_environment(self, monkeypatch):
        conf = self._load(monkeypatch, HOST="0.0.0.0", PORT="8010", WEB_CONCURRENCY="3")
        assert conf["bind"] == ["0.0.0.0:8010"]
        assert conf["workers"] == 3

    def test_empty_values_copied_from_env_example_mean_the_defaults(self, monkeypatch):
        conf = self._load(monkeypatch, HOST="", PORT="", WEB_CONCURRENCY="", GUNICORN_KEEPALIVE="")
        assert conf["bind"] == ["127.0.0.1:8000"]
        assert conf["workers"] == 2
        assert conf["keepalive"] == 5

    def test_the_keep_alive_can_outlast_a_load_balancers_idle_timeout(self, monkeypatch):
        assert self._load(monkeypatch, GUNICORN_KEEPALIVE="75")["keepalive"] == 75

    def test_defaults_are_loopback_and_asgi(self, monkeypatch):
        conf = self._load(monkeypatch)
        assert conf["bind"] == ["127.0.0.1:8000"]
        assert conf["worker_class"] == "uvicorn_worker.UvicornWorker"
        assert conf["preload_app"] is True
        assert conf["max_requests"] > 0 and conf["max_requests_jitter"] > 0
        # The hub's own access line (hub.access, with the request id) replaces the server's.
        assert conf["accesslog"] is None
        assert conf["raw_env"] == ["DATABASE_POOL=true"]


class TestRoutineTaskLines:
    def _record(self, msg, level=logging.INFO, name="celery.beat"):
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    def test_heartbeat_lines_become_debug_and_are_dropped_at_info(self):
        logging.getLogger("celery.beat").setLevel(logging.INFO)
        record = self._record("Scheduler: Sending due task integrations.ping (integrations.ping)")
        assert RoutineTasksAtDebug(["integrations.ping"]).filter(record) is False
        assert record.levelname == "DEBUG"

    def test_they_show_when_the_logger_is_at_debug(self):
        logger = logging.getLogger("celery.app.trace")
        old = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            record = self._record("Task integrations.ping[1] succeeded in 0.01s: None", name="celery.app.trace")
            assert RoutineTasksAtDebug(["integrations.ping"]).filter(record) is True
        finally:
            logger.setLevel(old)

    def test_other_tasks_and_failures_keep_their_level(self):
        quiet = RoutineTasksAtDebug(["integrations.ping"])
        other = self._record("Scheduler: Sending due task payments.reconcile_stripe")
        failed = self._record("Task integrations.ping[1] raised: boom", level=logging.ERROR, name="celery.app.trace")
        assert quiet.filter(other) and other.levelno == logging.INFO
        assert quiet.filter(failed) and failed.levelno == logging.ERROR
