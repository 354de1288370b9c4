#!/usr/bin/env python3
"""`make run`: prepare a development hub and run Procfile.dev (web, worker, beat) in the foreground.

    .venv/bin/python scripts/dev_run.py [--host 127.0.0.1] [--port 8000]

Steps, one status line each: development secrets in var/dev.env (once),
migrations, the dev admin (created once, password printed), then every
Procfile.dev process with its output prefixed by its name. When /readyz
answers 200 it prints where to go and how long start-up took.

Ctrl-C stops everything and exits 0. The terminal's Ctrl-C reaches only this
process: it takes the terminal's foreground for its own process group (as a
shell does for a job) and runs each child in a session of its own. So make
never sees the SIGINT (it would report "Error 130"), and Celery's pool
children do not die of a signal before their parent stops them ("Process
'ForkPoolWorker-1' exited with signal 15"). Each child then gets SIGTERM
(gunicorn and Celery shut down gracefully on it) and SIGKILL if it is still
there after STOP_GRACE_SECONDS.
"""

import argparse
import contextlib
import os
import re
import selectors
import shlex
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = "var/dev.env"
STOP_GRACE_SECONDS = 20
# Celery's "celery@host ready." line: /readyz is probed only after it (each earlier probe logs a failed
# worker check), or after WORKER_READY_WAIT_SECONDS if the line never shows.
WORKER_READY = re.compile(rb"celery@\S+ ready\.")
WORKER_READY_WAIT_SECONDS = 60
COLOURS = ["36", "33", "35", "32", "34", "31"]


def say(message):
    print(f"==> {message}", flush=True)


def parse_procfile(path):
    """[(name, command)] from `name: command` lines; blank lines and # comments skipped."""
    processes = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name.strip()):
            raise SystemExit(f"{path}: cannot read line {line!r} (expected `name: command`)")
        processes.append((name.strip(), command.strip()))
    return processes


def dev_environment(host, port):
    env = dict(os.environ)
    env.setdefault("DJANGO_ENV_FILE", ENV_FILE)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Celery sets its loggers to its --loglevel whatever the settings say: the Procfile passes this one.
    env.setdefault("LOG_LEVEL", "INFO")
    env.update(
        HOST=host,
        PORT=str(port),
        # One web process: without Redis the rate-limit cache lives in process memory.
        WEB_CONCURRENCY=env.get("WEB_CONCURRENCY", "1"),
        PYTHONUNBUFFERED="1",
    )
    # A developer's own hub on their own machine, often a container running as
    # root: Celery's advice to drop root is noise here. The image runs as an
    # unprivileged user, where the warning would still show if it ever applied.
    quiet = "ignore:You're running the worker with superuser privileges"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet]))
    return env


def command_argv(command, env):
    """A Procfile command's argv, its $NAME / ${NAME} taken from the processes' environment."""
    return shlex.split(string.Template(command).safe_substitute(env))


def prepare():
    """Migrations and the dev admin in one process (run as `dev_run.py --prepare`): Django and every
    provider SDK are imported once, not once per manage.py command, which is seconds on a busy machine."""
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    say("database: applying migrations")
    call_command("migrate", interactive=False, verbosity=1)
    say("dev admin")
    call_command("dev_admin")


class Foreground:
    """Own the terminal's foreground process group while the hub runs; give it back after."""

    def __init__(self):
        self.tty = None
        self.previous = None

    def __enter__(self):
        try:
            self.tty = os.open("/dev/tty", os.O_RDWR)
            self.previous = os.tcgetpgrp(self.tty)
            if self.previous != os.getpgrp():
                # Started in the background (`make run &`): leave the terminal alone.
                os.close(self.tty)
                self.tty = None
                return self
            # make (and a `| tee`) share our process group: leave it for one of our own.
            os.setpgid(0, 0)
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(self.tty, os.getpgrp())
        except OSError:
            # No terminal (CI, a pipe, nohup): nothing to take; stop with SIGTERM or SIGINT to this pid.
            self.tty = None
        return self

    def __exit__(self, *exc):
        if self.tty is not None:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(self.tty, self.previous)
            os.close(self.tty)


def _own_session_dies_with_parent():
    """In the child before exec: a session of its own, and SIGTERM if this runner dies without stopping it."""
    os.setsid()
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Processes:
    def __init__(self, processes, env):
        self.specs = processes
        self.env = env
        self.children = {}
        self.width = max(len(name) for name, _ in processes)
        self.selector = selectors.DefaultSelector()
        self.colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        self.output_lost = False
        self.partial = {}
        self.worker_ready = False

    def prefix(self, name):
        label = f"{time.strftime('%H:%M:%S')} {name.ljust(self.width)} | "
        if self.colour:
            code = COLOURS[[n for n, _ in self.specs].index(name) % len(COLOURS)]
            return f"\033[{code}m{label}\033[0m"
        return label

    def start(self):
        for name, command in self.specs:
            argv = command_argv(command, self.env)
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_own_session_dies_with_parent,
            )
            self.children[name] = proc
            self.selector.register(proc.stdout, selectors.EVENT_READ, name)
            print(f"{self.prefix(name)}started: {' '.join(argv)} (pid {proc.pid})", flush=True)

    def pump(self, timeout):
        # os.read, not readline: a buffered reader would keep lines the selector no longer reports.
        for key, _ in self.selector.select(timeout):
            name = key.data
            chunk = os.read(key.fd, 65536)
            if not chunk:
                self.selector.unregister(key.fileobj)
                chunk = b"\n" if self.partial.get(name) else b""
            *lines, self.partial[name] = (self.partial.get(name, b"") + chunk).split(b"\n")
            if name == "worker" and any(WORKER_READY.search(line) for line in lines):
                self.worker_ready = True
            self.write(name, lines)

    def write(self, name, lines):
        if not lines or self.output_lost:
            return
        try:
            sys.stdout.write("".join(f"{self.prefix(name)}{line.decode(errors='replace')}\n" for line in lines))
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (a `| tee` or `| head` ended): keep draining so no child blocks on
            # a full pipe, and stop, since nobody sees the output any more.
            self.output_lost = True

    def exited(self):
        return [(name, p.returncode) for name, p in self.children.items() if p.poll() is not None]

    def stop(self):
        for proc in self.children.values():
            if proc.poll() is None:
                # The main process only: gunicorn and Celery stop their own workers and pool
                # children in order; a signal to the whole group kills those mid-shutdown.
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline and any(p.poll() is None for p in self.children.values()):
            self.pump(0.1)
        for name, proc in self.children.items():
            if proc.poll() is None:
                print(f"{self.prefix(name)}still running after {STOP_GRACE_SECONDS} s; killing it", flush=True)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        while self.selector.get_map():
            self.pump(0.1)


def ready(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--procfile", default="Procfile.dev")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help="epoch seconds when `make run` began (for the ready line)")
    args = parser.parse_args(argv)
    started = args.started or time.time()
    os.chdir(ROOT)
    env = dev_environment(args.host, args.port)

    if args.prepare:
        prepare()
        return 0

    say(f"development secrets: {ENV_FILE}")
    subprocess.run([sys.executable, "scripts/dev_env.py", ENV_FILE], cwd=ROOT, check=True)
    if subprocess.run([sys.executable, __file__, "--prepare"], cwd=ROOT, env=env).returncode != 0:
        raise SystemExit("preparing the database failed (see above)")

    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    shown_host = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host
    base = f"http://{shown_host}:{args.port}"
    processes = Processes(parse_procfile(ROOT / args.procfile), env)
    with Foreground():
        say(f"starting {', '.join(name for name, _ in processes.specs)} (Ctrl-C stops them all)")
        processes.start()
        launched = time.monotonic()
        announced = web_up = False
        next_probe = 0.0
        failed = []
        while not stopping:
            processes.pump(0.2)
            failed = processes.exited()
            if failed or processes.output_lost:
                break
            if not announced and time.monotonic() >= next_probe:
                # /healthz until the web answers, then /readyz (which waits for the worker) once a
                # second: each 503 is a logged error, so few of them.
                web_up = web_up or ready(f"{base}/healthz")
                next_probe = time.monotonic() + (1.0 if web_up else 0.3)
                worker_up = processes.worker_ready or time.monotonic() - launched > WORKER_READY_WAIT_SECONDS
                if web_up and worker_up and ready(f"{base}/readyz"):
                    announced = True
                    say(
                        f"ready in {time.time() - started:.0f} s: {base}/  "
                        f"(admin {base}/admin/, API docs {base}/api/docs/, health {base}/readyz)"
                    )
        if failed:
            say(", ".join(f"{name} exited with code {code}" for name, code in failed) + "; stopping the rest")
        else:
            say("stopping web, worker and beat")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        processes.stop()
    say("stopped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
