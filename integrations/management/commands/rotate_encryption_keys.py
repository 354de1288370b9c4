"""Re-encrypt every EncryptedTextField value with the first key in FIELD_ENCRYPTION_KEYS.

Rotation: put the new key first (keep the old ones after it), deploy, run this,
then remove the old keys. Models are found through the app registry, so new
encrypted fields are covered without touching this command.
"""

import argparse

from django.core.management.base import BaseCommand
from django.db import transaction

from integrations.audit.services import audit_record
from integrations.fields import encrypted_fields


def _batch_size(value):
    # 0 read no row and reported "Done: 0 row(s)": an operator would then drop the old key still in use.
    size = int(value)
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return size


class Command(BaseCommand):
    help = "Re-encrypt all encrypted fields with the first key of FIELD_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=_batch_size, default=500)

    def handle(self, *args, batch_size, **options):
        total = 0
        for model, names in encrypted_fields():
            label = f"{model._meta.label} ({', '.join(names)})"
            count = 0
            last_pk = None
            manager = model._base_manager
            while True:
                # Keyset pagination by pk: each batch is its own short transaction,
                # so a large table never holds one long lock.
                with transaction.atomic():
                    qs = manager.select_for_update().order_by("pk").only("pk", *names)
                    if last_pk is not None:
                        qs = qs.filter(pk__gt=last_pk)
                    rows = list(qs[:batch_size])
                    if not rows:
                        break
                    # Loading decrypted with any key; saving encrypts with the first.
                    manager.bulk_update(rows, names)
                count += len(rows)
                last_pk = rows[-1].pk
            total += count
            self.stdout.write(f"{label}: re-encrypted {count} row(s)")
        audit_record(action="encryption.rotate_keys", target=("encryption", "FIELD_ENCRYPTION_KEYS"), rows=total)
        self.stdout.write(self.style.SUCCESS(f"Done: {total} row(s) re-encrypted with the first key."))
