from django.core.management.base import BaseCommand, CommandError

from integrations.errors import ProviderError
from payments.services import reconcile_stripe


class Command(BaseCommand):
    help = "List recent PaymentIntents and refunds on Stripe and repair local state that a missed webhook left behind."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=int, default=72, help="How far back to look (default 72).")

    def handle(self, *args, hours, **options):
        try:
            run = reconcile_stripe(hours=hours)
        except ProviderError as exc:
            raise CommandError(f"Stripe reconciliation failed: {exc.detail_sentence()}") from exc
        self.stdout.write(f"Checked {run.checked} Stripe object(s); fixed {run.fixed}.")
        for fix in run.fixes:
            self.stdout.write(f"  fixed {fix}")
