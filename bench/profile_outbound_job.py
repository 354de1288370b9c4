"""Where an outbound job's CPU and round trips go in a worker: bench_scaleout's job run by a worker in this process.

Not a suite (bench/run.py runs bench_*.py only): a tool for issue 11's scale-out work. It queues
WARM + N `bench.outbound_job` messages, runs a Celery worker here with the solo pool (the task, its
signals, the broker's receive and ack: what a prefork child and its parent do between them, without
the pipe between the two), and from the WARM+1st job on counts per job: CPU (time.process_time),
Redis round trips (writes to a socket: a pipeline is one) with the commands they carried, broker
and hub apart, and SQL statements and transactions ended on PostgreSQL. With --profile, a cProfile
of the N jobs by CPU time.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/profile_outbound_job.py [N] [--profile]

Run it with no other worker consuming the `default` queue.
"""

import cProfile
import os
import pstats
import signal
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ.setdefault("LOG_LEVEL", "WARNING")

WARM = 200


def out(*args):
    print(*args, file=sys.__stdout__)  # the worker redirects sys.stdout to its log


class Counts:
    def __init__(self):
        self.on = False
        self.redis = Counter()  # (client, first command of the write) -> writes
        self.commands = Counter()  # (client, command) -> commands
        self.sql = Counter()  # first word of each statement -> statements
        self.ends = Counter()  # how transactions ended: autocommit statement, commit, rollback
        self.clients = 0  # redis-py client objects built

    def report(self, jobs):
        def per(n):
            return f"{n / jobs:.2f}"

        out(f"\nper job, over {jobs} jobs:")
        for client in ("broker", "hub"):
            writes = sum(n for (c, _), n in self.redis.items() if c == client)
            out(f"  Redis round trips ({client}): {per(writes)}")
            for (c, cmd), n in sorted(self.commands.items(), key=lambda x: -x[1]):
                if c == client:
                    out(f"      {cmd:<12} {per(n)}")
        out(f"  redis-py client objects built: {per(self.clients)}")
        out(f"  SQL statements: {per(sum(self.sql.values()))}")
        for word, n in self.sql.most_common():
            out(f"      {word:<12} {per(n)}")
        out(
            f"  PostgreSQL round trips and commits: {', '.join(f'{k} {per(n)}' for k, n in self.ends.items()) or 'none'}"
        )


def _commands(packed):
    """Command names in one RESP write (a pipeline carries several)."""
    data = b"".join(p if isinstance(p, bytes) else bytes(p) for p in packed) if isinstance(packed, list) else packed
    names, lines, i = [], data.split(b"\r\n"), 0
    while i < len(lines):
        if lines[i].startswith(b"*"):
            names.append(lines[i + 2].decode(errors="replace").upper())
            i += 1 + 2 * int(lines[i][1:])
        else:
            i += 1
    return names


def instrument(counts, hub_pools):
    import psycopg
    import redis
    from redis.connection import AbstractConnection

    build = redis.Redis.__init__

    def redis_init(self, *args, **kwargs):
        if counts.on:
            counts.clients += 1
        build(self, *args, **kwargs)

    redis.Redis.__init__ = redis_init

    send = AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):
        if counts.on:
            client = "hub" if self._hub_pool in hub_pools() else "broker"
            names = _commands(command)
            counts.redis[(client, names[0] if names else "?")] += 1
            for name in names:
                counts.commands[(client, name)] += 1
        return send(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command
    make = AbstractConnection.__init__

    def init(self, *args, **kwargs):
        make(self, *args, **kwargs)
        self._hub_pool = None

    AbstractConnection.__init__ = init
    from redis import connection as redis_connection

    get = redis_connection.ConnectionPool.get_connection

    def get_connection(self, *args, **kwargs):
        conn = get(self, *args, **kwargs)
        conn._hub_pool = id(self)
        return conn

    redis_connection.ConnectionPool.get_connection = get_connection

    execute = psycopg.Cursor.execute

    def cursor_execute(self, query, params=None, **kwargs):
        if counts.on:
            text = query if isinstance(query, str) else getattr(query, "as_string", lambda c: str(query))(self)
            counts.ends["round trip"] += 1
            words = [part.split(None, 1)[0].upper() for part in text.split("; ") if part.strip()]
            for word in words:
                counts.sql[word] += 1
            if self.connection.autocommit and set(words) - {"SELECT", "SET"}:
                no_wait = "synchronous_commit TO OFF" in text
                counts.ends["autocommit write" + (" (no flush wait)" if no_wait else "")] += 1
        return execute(self, query, params, **kwargs)

    psycopg.Cursor.execute = cursor_execute
    for name in ("commit", "rollback"):
        original = getattr(psycopg.Connection, name)

        def wrapped(self, _original=original, _name=name):
            if counts.on:
                counts.ends[_name] += 1
            return _original(self)

        setattr(psycopg.Connection, name, wrapped)


def main(argv):
    from bench import common

    reason = common.setup()
    if reason:
        out(reason)
        return 1
    from celery.signals import task_postrun, task_prerun

    from bench.hookapp.tasks import DONE_KEY, outbound_job
    from config.celery import app
    from integrations.models import ProviderCall
    from integrations.redis import get_client

    jobs = next((int(a) for a in argv if a.isdigit()), 2000)
    profile = cProfile.Profile() if "--profile" in argv else None
    client = get_client()
    client.delete(DONE_KEY, "default")
    ProviderCall.objects.filter(provider="stripe", operation="charge").delete()
    with app.producer_or_acquire() as producer:
        for i in range(WARM + jobs):
            outbound_job.apply_async((i,), producer=producer)

    counts = Counts()

    def hub_pools():
        # The limiter's and breakers' client and the Django cache's (integrations.cache): the rest is the broker.
        from integrations import cache as hub_cache

        return {id(client.connection_pool), *(id(entry[0]) for entry in hub_cache._shared.values())}

    instrument(counts, hub_pools)
    state = {"ran": 0}

    @task_prerun.connect(weak=False)
    def _prerun(**kwargs):
        if state["ran"] == WARM:
            state["cpu"], state["wall"] = time.process_time(), time.perf_counter()
            counts.on = True
            if profile is not None:
                profile.enable()

    @task_postrun.connect(weak=False)
    def _postrun(**kwargs):
        state["ran"] += 1
        if state["ran"] == WARM + jobs:
            # Counted: N runs, and the receive and ack of N - 1 (this one's ack and the first one's receive are not).
            counts.on = False
            if profile is not None:
                profile.disable()
            state["cpu"] = time.process_time() - state["cpu"]
            state["wall"] = time.perf_counter() - state["wall"]
            os.kill(os.getpid(), signal.SIGTERM)

    worker = app.Worker(
        pool="solo",
        concurrency=1,
        queues=["default"],
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel="WARNING",
        hostname=f"profile-{os.getpid()}@localhost",
    )
    worker.start()
    out(
        f"{jobs} jobs after {WARM} to warm up: CPU {state['cpu'] * 1000 / jobs:.3f} ms per job, wall {state['wall'] * 1000 / jobs:.3f} ms per job ({jobs / state['wall']:.0f} jobs/s, one process)"
    )
    counts.report(jobs)
    if profile is not None:
        for order, lines in (("tottime", 40), ("cumulative", 60)):
            pstats.Stats(profile, stream=sys.__stdout__).sort_stats(order).print_stats(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
