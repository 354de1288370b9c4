"""`make bench`: run every bench/bench_*.py suite and write bench/RESULTS.md.

Each suite module defines `TITLE` and `run()`, which returns markdown (its
tables and the notes a reader needs). Suites measure side by side in one run
and report ratios and medians; the machine is shared and noisy. Suites that
need PostgreSQL and Redis read DATABASE_URL / REDIS_URL (default: the local
standard ports) and say so when those are not reachable.

    .venv/bin/python bench/run.py              # all suites
    .venv/bin/python bench/run.py gateway      # suites whose name contains "gateway"
"""

import datetime as dt
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))


def machine():
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB memory, {platform.platform()}, Python {platform.python_version()}"


def reference_ms():
    """The machine's speed just now: a fixed pure-Python loop (a million additions and dict writes), median of 3
    runs, in ms. The machines are shared and their speed drifts by 2-3x between days (other tenants, CPU steal):
    absolute figures of two runs compare only beside this; ratios measured in one run do not need it."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        total, seen = 0, {}
        for i in range(1_000_000):
            total += i
            seen[i & 1023] = total
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[1]


def main(argv):
    wanted = argv[1:]
    suites = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    if wanted:
        # A suite's full name picks that suite only (bench_ai, not bench_ai_serving); other words pick by part.
        suites = [s for s in suites if any(w == s or (w not in suites and w in s) for w in wanted)]
    sections = []
    for name in suites:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}: {module.TITLE}", flush=True)
        speed_before = reference_ms()
        started = time.monotonic()
        try:
            body = module.run()
        except Exception:  # noqa: BLE001 - one broken suite must not hide the others' figures
            body = "Failed:\n\n```\n" + traceback.format_exc() + "```\n"
        when = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}"
        took = time.monotonic() - started
        speed = (
            f"reference loop {speed_before:.0f} ms before / {reference_ms():.0f} ms after (bench/run.py reference_ms)"
        )
        sections.append(f"## {module.TITLE}\n\n_suite `{name}`, {took:.0f} s, measured {when}; {speed}_\n\n{body}\n")
        print(body, flush=True)
    header = (
        "# Benchmark results\n\n"
        f"- command: `make bench` (`python bench/run.py {' '.join(wanted)}`)\n"
        f"- machine: {machine()}\n"
        "- speed: each suite's line gives a pure-Python reference loop's time before and after it (lower is "
        "faster); the shared machines' speed drifts 2-3x between days, so compare absolute figures of two runs "
        "only beside it\n"
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}\n\n"
    )
    out = BENCH / "RESULTS.md"
    if wanted and out.exists():
        # A partial run replaces only its own sections.
        kept = [s for s in out.read_text().split("\n## ")[1:] if not any(f"_suite `{n}`" in s for n in suites)]
        sections = ["## " + s.rstrip() + "\n" for s in kept] + sections
    out.write_text(header + "\n".join(sections))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv)
