import json

from django.core.management.base import BaseCommand, CommandError

from documents import services
from integrations.errors import ProviderError


class Command(BaseCommand):
    help = (
        "Apply the documents bucket's lifecycle rules from settings: move objects to an infrequent-access "
        "class, then an archive class, abort incomplete multipart uploads, expire old non-current versions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print the rules without applying them.")

    def handle(self, *args, dry_run=False, **options):
        try:
            rules = services.lifecycle_rules()
        except services.LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        if dry_run:
            self.stdout.write(json.dumps(rules, indent=2))
            return
        try:
            services.bucket_lifecycle_configure()
        except ProviderError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(rules, indent=2))
        self.stdout.write(self.style.SUCCESS("Lifecycle rules applied."))
