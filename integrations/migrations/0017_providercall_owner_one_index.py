import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Django's name for the foreign key's own index (the same on every database).
INDEX = "integrations_providercall_owner_id_da0e53e6"


def drop_index(apps, schema_editor):
    # Only the index: Django's AlterField would also drop and re-add the foreign key, which checks every row of the
    # call log under a lock that holds up each provider call's INSERT. CONCURRENTLY (PostgreSQL) takes no such lock.
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {schema_editor.quote_name(INDEX)}")


def create_index(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        f"CREATE INDEX{concurrently} IF NOT EXISTS {schema_editor.quote_name(INDEX)} "
        f"ON {schema_editor.quote_name('integrations_providercall')} ({schema_editor.quote_name('owner_id')})"
    )


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("integrations", "0016_alert_channels_retention"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="providercall",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="provider_calls",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, create_index)],
        ),
    ]
