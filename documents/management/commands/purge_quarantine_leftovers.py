from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from documents import services
from integrations.errors import ProviderError


class Command(BaseCommand):
    help = (
        "Once, on a versioned bucket: delete the noncurrent versions of infected files that quarantine moves and "
        "purges left before the hub deleted every version of a key (b1c5280): the original key of each "
        "quarantined version, and quarantine keys no version names. Prints each key."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print the keys without deleting anything.")

    def handle(self, *args, dry_run=False, **options):
        if not settings.S3_BUCKET:
            raise CommandError("S3_BUCKET is not set: files on the server's disk have no versions to leave behind.")
        try:
            keys = services.quarantine_leftovers_purge(dry_run=dry_run)
        except ProviderError as exc:
            raise CommandError(str(exc)) from exc
        for key in keys:
            self.stdout.write(key)
        done = "would be deleted (dry run)" if dry_run else "deleted"
        self.stdout.write(self.style.SUCCESS(f"Every version of {len(keys)} key(s) {done}."))
