#!/usr/bin/env python3
"""Container health checks (docker-compose.yml): `python scripts/healthcheck.py web|worker|beat`.

Exit 0 when healthy, 1 with a one-line reason otherwise. Light on purpose: a
check runs every 30 s in every container, so none of them starts Django.

- web:    GET /readyz on this container answers 200 (database, cache, broker, a live worker).
- worker: this worker answers a Celery ping (`celery inspect ping` to its own node name).
- beat:   some worker ran beat's heartbeat task recently (integrations_workerheartbeat),
          which only happens while beat is sending it.
"""

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request


def fail(reason):
    print(f"unhealthy: {reason}")
    return 1


def check_web():
    # The request must carry a host the hub accepts: the first of ALLOWED_HOSTS
    # (".example.com" means any subdomain; "*" any host).
    first = (os.environ.get("ALLOWED_HOSTS", "") or "localhost").split(",")[0].strip()
    host = "localhost" if first in {"", "*"} else first.lstrip(".")
    request = urllib.request.Request(
        f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}/readyz",
        headers={"Host": host, "X-Forwarded-Proto": "https"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return 0 if response.status == 200 else fail(f"/readyz answered {response.status}")
    except urllib.error.HTTPError as exc:
        return fail(f"/readyz answered {exc.code}: {exc.read(300).decode(errors='replace')}")
    except OSError as exc:
        return fail(f"/readyz unreachable: {exc}")


def check_worker():
    node = f"celery@{socket.gethostname()}"
    out = subprocess.run(
        ["celery", "-A", "config", "inspect", "ping", "--destination", node, "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=40,
    )
    return 0 if out.returncode == 0 and "pong" in out.stdout else fail(f"{node} did not answer a ping")


def check_beat():
    import psycopg  # the runtime requirements' PostgreSQL driver; compose always sets DATABASE_URL

    max_age = int(os.environ.get("HEARTBEAT_MAX_AGE_SECONDS", "90"))
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM now() - max(seen_at)) FROM integrations_workerheartbeat"
        ).fetchone()
    age = row[0] if row else None
    if age is None:
        return fail("no heartbeat recorded yet")
    return 0 if age <= max_age else fail(f"last heartbeat {float(age):.0f} s ago (limit {max_age} s)")


CHECKS = {"web": check_web, "worker": check_worker, "beat": check_beat}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(CHECKS)}")
    sys.exit(CHECKS[sys.argv[1]]())
