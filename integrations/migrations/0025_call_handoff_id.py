from django.db import migrations, models

CONSTRAINT = models.UniqueConstraint(
    fields=["handoff_id"], condition=models.Q(handoff_id__isnull=False), name="pcall_handoff_once"
)


def create_index(apps, schema_editor):
    model = apps.get_model("integrations", "ProviderCall")
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.add_constraint(model, CONSTRAINT)
        return
    # CONCURRENTLY: no lock that holds up the call log's INSERTs while a large table is scanned. The same
    # index Django builds for the constraint (a partial unique index), so the model state matches it.
    table = schema_editor.quote_name(model._meta.db_table)
    schema_editor.execute(
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS pcall_handoff_once ON {table} (handoff_id) "
        "WHERE handoff_id IS NOT NULL"
    )


def drop_index(apps, schema_editor):
    model = apps.get_model("integrations", "ProviderCall")
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.remove_constraint(model, CONSTRAINT)
        return
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS pcall_handoff_once")


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("integrations", "0024_plural_names"),
    ]

    operations = [
        migrations.AddField(
            model_name="providercall",
            name="handoff_id",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddConstraint(model_name="providercall", constraint=CONSTRAINT)],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
