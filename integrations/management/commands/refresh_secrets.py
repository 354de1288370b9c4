"""Fetch the SECRETS_MANAGER_ARN secret again and name what changed (never the values)."""

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from config.settings._secrets import fetch_secrets_manager
from integrations.audit.models import AuditEvent
from integrations.audit.services import audit_record

# The actor is "system": a management command runs as a shell user, not as a hub account.
TARGET = ("secrets", "SECRETS_MANAGER_ARN")


class Command(BaseCommand):
    help = (
        "Read the AWS Secrets Manager secret named by SECRETS_MANAGER_ARN again and list which setting names "
        "changed since this process started. Running processes keep their values until they restart."
    )

    def handle(self, *args, **options):
        arn = os.environ.get("SECRETS_MANAGER_ARN", "")
        if not arn:
            raise CommandError("SECRETS_MANAGER_ARN is not set; secrets come from the environment or NAME_FILE.")
        try:
            fresh = fetch_secrets_manager(arn)
        except ImproperlyConfigured as exc:
            audit_record(
                action="secrets.refresh", target=TARGET, outcome=AuditEvent.Outcome.FAILED, error=str(exc)[:300]
            )
            raise CommandError(str(exc)) from None
        loaded = set(settings.SECRETS_FROM_MANAGER)
        changed = sorted(n for n in loaded & fresh.keys() if os.environ.get(n) != fresh[n])
        added = sorted(n for n in fresh.keys() - loaded if n not in os.environ and f"{n}_FILE" not in os.environ)
        removed = sorted(loaded - fresh.keys())
        overridden = sorted(n for n in fresh.keys() - loaded if n in os.environ or f"{n}_FILE" in os.environ)
        # Names only, never a value: the audit trail is kept for years.
        audit_record(
            action="secrets.refresh",
            target=TARGET,
            changed=changed,
            added=added,
            removed=removed,
            overridden=overridden,
        )
        for label, names in (("changed", changed), ("new", added), ("removed", removed)):
            if names:
                self.stdout.write(f"{label}: {', '.join(names)}")
        if overridden:
            self.stdout.write(f"set by the environment or a _FILE (Secrets Manager ignored): {', '.join(overridden)}")
        if changed or added or removed:
            self.stdout.write("Restart web, worker and beat to load the new values.")
        else:
            self.stdout.write("No change since this process started.")
