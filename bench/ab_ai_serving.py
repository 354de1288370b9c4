"""A/B of the non-streamed AI path: two checkouts' hubs side by side with LiteLLM, rounds interleaved in one run.

Not a suite (bench/run.py runs bench_*.py only): bench_ai_serving's non-streamed measurement with two hubs,
"A" served from another checkout of the project (e.g. a worktree of main) and "B" from this one, each as
bench_ai_serving starts it (gunicorn + uvicorn workers, same environment), so both see the same machine load.

    DATABASE_URL=... REDIS_URL=... BENCH_PORTS=18300-18399 BENCH_AI_ROUNDS=8 \\
        .venv/bin/python bench/ab_ai_serving.py /path/to/checkout-A
"""

import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from bench import bench_ai_serving as suite  # noqa: E402
from bench import common  # noqa: E402


def _hub(name, tree, port, provider_url, tmp, extra_env):
    env = {**suite._hub_env(provider_url), "PYTHONPATH": str(tree), **extra_env}
    argv = [str(common.BIN / "gunicorn"), "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    child = common.Child(name, [*argv, "config.asgi:application"], tmp, env=env, cwd=tree)
    suite._wait(f"http://127.0.0.1:{port}/healthz", child)
    return child


def main():
    other = Path(sys.argv[1]).resolve()
    why = common.setup()
    if why:
        sys.exit(why)
    ports = suite._ports()
    children = []
    with tempfile.TemporaryDirectory(prefix="bench-ai-ab-") as tmp:
        try:
            fake_port = next(ports)
            provider_url = f"http://127.0.0.1:{fake_port}/v1"
            fake = common.Child("fake_llm", [common.PYTHON, "bench/fake_llm.py", str(fake_port), "5"], tmp)
            children.append(fake)
            suite._wait(f"{provider_url}/models", fake, 30)
            _, token = common.api_token("bench-ai-serving")
            headers = {"Authorization": f"Token {token}"}
            targets = []
            for name, tree, extra in (("hub A", other, "AB_A_ENV"), ("hub B", ROOT, "AB_B_ENV")):
                port = next(ports)
                extra_env = dict(kv.split("=", 1) for kv in os.environ.get(extra, "").split() if kv)
                children.append(_hub(name.replace(" ", "-"), tree, port, provider_url, tmp, extra_env))
                targets.append(
                    suite.Target(
                        name,
                        f"http://127.0.0.1:{port}",
                        completions="/api/v1/ai/completions/",
                        probe=[],
                        headers=headers,
                    )
                )
            cli, why_not = suite._litellm_installed()
            if cli is None:
                sys.exit(why_not)
            config = Path(tmp) / "litellm.yaml"
            suite._litellm_config(config, provider_url)
            lite_port = next(ports)
            lite = common.Child(
                "litellm",
                [str(cli.parent / "python"), "-c", suite._LITELLM_CLI, "--config", str(config)]
                + ["--host", "127.0.0.1", "--port", str(lite_port), "--num_workers", "2"],
                tmp,
                env={"LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                unset=("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"),
            )
            children.append(lite)
            suite._wait(f"http://127.0.0.1:{lite_port}/health/liveliness", lite)
            targets.append(
                suite.Target(
                    "LiteLLM",
                    f"http://127.0.0.1:{lite_port}",
                    completions="/v1/chat/completions",
                    probe=[],
                    headers={"Authorization": f"Bearer {suite.MASTER_KEY}"},
                )
            )
            direct = suite.Target(
                "direct", f"http://127.0.0.1:{fake_port}", completions="/v1/chat/completions", probe=[], headers={}
            )
            load_before = common.machine_load()
            lat = suite.measure_latency(targets, direct)
            load_after = common.machine_load()
        finally:
            for child in reversed(children):
                child.stop()
    base = statistics.median(lat["direct"])
    added = {name: statistics.median(values) - base for name, values in lat.items()}
    print(f"{suite.ROUNDS} rounds x {suite.PER_ROUND} per target, interleaved; load {load_before} -> {load_after}")
    print(
        common.table(
            ["path", "median ms", "p99 ms", "added ms", "/ LiteLLM's"],
            [
                (
                    name,
                    f"{statistics.median(values):.2f}",
                    f"{common.percentile(values, 99):.2f}",
                    f"{added[name]:+.2f}",
                    f"{added[name] / added['LiteLLM']:.2f}" if name != "direct" else "-",
                )
                for name, values in lat.items()
            ],
        )
    )


if __name__ == "__main__":
    main()
