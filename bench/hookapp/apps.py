import os

from django.apps import AppConfig


class BenchHookConfig(AppConfig):
    """A signed test webhook for the inbox benchmark; installed by bench.settings only."""

    name = "bench.hookapp"
    label = "bench_hookapp"
    verbose_name = "Benchmark webhook provider"

    def ready(self):
        # bench_stripe_events reads "every event handled once" from the handlers' own count: with
        # BENCH_COUNT_STRIPE=<redis key>, each Stripe handler run that commits adds 1 to its event's count.
        count_key = os.environ.get("BENCH_COUNT_STRIPE")
        if count_key:
            from .webhooks import count_stripe_handlers

            count_stripe_handlers(count_key)
