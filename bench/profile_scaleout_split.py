"""Where bench_scaleout's worker CPU goes, process by process and thread by thread, and what a job waits on.

Not a suite (bench/run.py runs bench_*.py only): a tool for issue 11 point 6. For each layout it queues
JOBS `bench.outbound_job` messages into a list no worker reads, starts the worker node(s), moves the
messages back to the `default` queue once every node is ready (so a second node does not find the work
done by the first), and counts from the first job done to the last:

- jobs/s and the wall time per job;
- CPU per job (/proc, ticks) of each node's main process (Celery's consumer: take, hand-over, ack),
  of each pool child's task thread and of its call-log drainer thread (integrations/gateway/handoff.py),
  and of PostgreSQL, Redis and the rest of the machine;
- with --idle, a py-spy sample of every thread (idle ones included, 250 Hz) summed by what the thread
  was doing: on the CPU, writing to or waiting on Redis, waiting on PostgreSQL, sending to or waiting
  for the other process over the pool's pipes, idle in the event loop. The wall time of one process's
  job is spent in its two processes one after the other (prefetch 1), so these shares say how much of
  it is waiting. py-spy is installed into var/bench/py-spy-venv on first use.

Layouts (`--layouts`, comma-separated): prefork1 (one node, --concurrency 1), prefork2 (one node,
--concurrency 2), 2x-prefork1 (two nodes of --concurrency 1), solo1, 2x-solo1 (the solo pool: the
task runs in the process that takes its message; what the hub would need its own time limits for).

    DATABASE_URL=... REDIS_URL=... BENCH_PORT_RANGE=... .venv/bin/python bench/profile_scaleout_split.py \\
        [--jobs 3000] [--rounds 2] [--loglevel WARNING] [--layouts prefork1,prefork2] [--idle]

Layouts alternate within each round; medians over rounds. Run it with no other worker consuming `default`.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")
LAYOUTS = {
    "prefork1": ("prefork", 1, 1),
    "prefork2": ("prefork", 2, 1),
    "2x-prefork1": ("prefork", 1, 2),
    "solo1": ("solo", 1, 1),
    "2x-solo1": ("solo", 1, 2),
}
HELD = "bench:scaleout-split:held"


def _threads(pid):
    """{tid: (name, CPU ticks)} of one process."""
    out = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                out[int(tid)] = int(fields[11]) + int(fields[12])
    return out


def _children(pid):
    with contextlib.suppress(OSError):
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _py_spy():
    exe = ROOT / "var" / "bench" / "py-spy-venv" / "bin" / "py-spy"
    if not exe.exists():
        venv = exe.parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "py-spy==0.4.3"], check=True, capture_output=True)
    return exe


def _what(frames):
    """What a sampled thread was doing, from its stack (innermost frame last)."""
    last, tail = frames[-1], ";".join(frames[-8:])
    if "_epoll.poll" in last:
        return "idle in the event loop (waiting for Redis or a child)"
    if "Connection._recv (billiard" in last:
        return "waiting for the other process (pool pipe)"
    if "_read_from_socket" in last or "SocketBuffer" in last:
        return "waiting on Redis (reply)"
    if "send_packed_command" in last:
        return "writing to Redis (syscall)"
    if "psycopg" in tail and "wait" in last:
        return "waiting on PostgreSQL"
    if "send_offset" in last or "Connection._send (billiard" in last:
        return "writing to the other process (pool pipe)"
    if "Event.wait" in tail or "Condition.wait" in tail:
        return "asleep (drainer between batches)"
    return "on the CPU (Python)"


def _spy_summary(path):
    per = defaultdict(Counter)
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            thread = "drainer" if "Drainer._run" in stack else "main thread"
            per[thread][_what(frames)] += int(n)
    return per


def _publish(jobs, env):
    from bench.bench_scaleout import PUBLISH
    from integrations.redis import get_client

    subprocess.run([common.PYTHON, "-c", PUBLISH, str(jobs)], cwd=common.ROOT, env=env, check=True, capture_output=True)
    client = get_client()
    client.delete(HELD)
    client.rename("default", HELD)  # no worker reads it until every node is ready


def _one(layout, jobs, loglevel, idle, tmp):
    from django.conf import settings

    from bench.bench_scaleout import _purge
    from bench.hookapp.tasks import DONE_KEY
    from integrations.models import ProviderCall
    from integrations.redis import get_client

    pool, concurrency, nodes = LAYOUTS[layout]
    client = get_client()
    client.delete(DONE_KEY)
    ProviderCall.objects.filter(provider="stripe", operation="charge").delete()
    _purge(settings.CELERY_BROKER_URL)
    _publish(jobs, common._env())
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(
                common.celery_worker(
                    concurrency=concurrency, loglevel=loglevel, pool=pool, hostname=f"split{i}-{os.getpid()}@bench"
                )
            )
            for i in range(nodes)
        ]
        procs = {}
        for i, w in enumerate(workers):
            procs[(i, "main")] = w.pgid
            for j, pid in enumerate(_children(w.pgid)):
                procs[(i, f"child{j}")] = pid
        spies = []
        if idle:
            exe = _py_spy()
            for key, pid in procs.items():
                out = tmp / f"{layout}-{key[0]}-{key[1]}.txt"
                spies.append(
                    subprocess.Popen(
                        [str(exe), "record", "-r", "250", "-p", str(pid), "-f", "raw", "--idle", "-o", str(out)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        client.rename(HELD, "default")
        while client.hlen(DONE_KEY) == 0:
            time.sleep(0.001)
        meter = common.CpuMeter({f"node {i}": w.pgid for i, w in enumerate(workers)}).start()
        before = {key: _threads(pid) for key, pid in procs.items()}
        started, first = time.monotonic(), client.hlen(DONE_KEY)
        deadline = started + 300
        while client.hlen(DONE_KEY) < jobs and time.monotonic() < deadline:
            time.sleep(0.005)
        elapsed = time.monotonic() - started
        done = client.hlen(DONE_KEY) - first
        after = {key: _threads(pid) for key, pid in procs.items()}
        machine = meter.stop()
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(60)
    roles = Counter()
    for key, pid in procs.items():
        for tid, ticks in after[key].items():
            spent = ticks - before[key].get(tid, 0)
            if key[1] == "main" and pool == "prefork":
                role = "main process"
            elif tid == pid:
                role = "task thread" if pool == "prefork" else "process (take, task, ack)"
            else:
                role = "drainer thread"
            roles[role] += spent * 1000 / HZ / max(done, 1)
    others = {k: v * 1000 / max(done, 1) for k, v in machine.items() if not k.startswith("node ")}
    spied = {}
    if idle:
        for key in procs:
            spied[key] = _spy_summary(tmp / f"{layout}-{key[0]}-{key[1]}.txt")
    return {
        "rate": done / elapsed,
        "wall_ms": elapsed * 1000 / max(done, 1),
        "roles": dict(roles),
        "others": others,
        "spied": spied,
        "load": common.machine_load(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--layouts", default="prefork1,prefork2,2x-prefork1,solo1,2x-solo1")
    parser.add_argument("--idle", action="store_true", help="py-spy every thread: what the wall time was spent on")
    args = parser.parse_args()
    reason = common.setup()
    if reason:
        sys.exit(reason)
    layouts = args.layouts.split(",")
    tmp = ROOT / "var" / "bench" / "scaleout-split"
    tmp.mkdir(parents=True, exist_ok=True)
    results = defaultdict(list)
    for r in range(args.rounds):
        for layout in layouts if r % 2 == 0 else reversed(layouts):
            res = _one(layout, args.jobs, args.loglevel, args.idle, tmp)
            results[layout].append(res)
            roles = ", ".join(f"{k} {v:.3f}" for k, v in sorted(res["roles"].items()))
            others = ", ".join(f"{k} {v:.3f}" for k, v in sorted(res["others"].items()))
            print(
                f"{layout:12} {res['rate']:6.0f} jobs/s, wall {res['wall_ms']:.2f} ms/job; "
                f"CPU ms/job: {roles}; {others}; {res['load']}",
                flush=True,
            )
            for (node, proc), per in sorted(res["spied"].items()):
                for thread, counts in per.items():
                    total = sum(counts.values()) or 1
                    shares = "; ".join(f"{100 * n / total:.0f}% {what}" for what, n in counts.most_common())
                    print(f"    node {node} {proc} {thread}: {shares}")
    print("\nmedians:")
    base = common.median([x["rate"] for x in results[layouts[0]]])
    for layout in layouts:
        runs = results[layout]
        rate = common.median([x["rate"] for x in runs])
        cpu = sum(common.median([x["roles"].get(k, 0) for x in runs]) for k in runs[0]["roles"])
        machine = cpu + sum(common.median([x["others"].get(k, 0) for x in runs]) for k in ("PostgreSQL", "Redis"))
        print(
            f"{layout:12} {rate:6.0f} jobs/s ({rate / base:.2f}x {layouts[0]}), worker CPU {cpu:.2f} ms/job, "
            f"with PostgreSQL and Redis {machine:.2f} ms/job"
        )


if __name__ == "__main__":
    main()
