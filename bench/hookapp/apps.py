from django.apps import AppConfig


class BenchHookConfig(AppConfig):
    """A signed test webhook for the inbox benchmark; installed by bench.settings only."""

    name = "bench.hookapp"
    label = "bench_hookapp"
    verbose_name = "Benchmark webhook provider"
