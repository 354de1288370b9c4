from django.db import migrations, models
from django.db.models.functions import Coalesce

INDEX = models.Index(
    models.F("provider"),
    Coalesce("occurred_at", "received_at"),
    models.F("id"),
    condition=models.Q(status__in=["received", "failed"]),
    name="webhookevent_ready_idx",
)


def _concurrently(schema_editor):
    # CONCURRENTLY (PostgreSQL) takes no lock that holds up the inbox's INSERTs while the index is built.
    return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}


def create_index(apps, schema_editor):
    schema_editor.add_index(apps.get_model("integrations", "WebhookEvent"), INDEX, **_concurrently(schema_editor))


def drop_index(apps, schema_editor):
    schema_editor.remove_index(apps.get_model("integrations", "WebhookEvent"), INDEX, **_concurrently(schema_editor))


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("integrations", "0020_alertdelivery_claimed_at"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="webhookevent", index=INDEX)],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
