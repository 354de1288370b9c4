from django.db import migrations, models


class Migration(migrations.Migration):
    # A column with a constant default on a small table (a row per user, month and model): PostgreSQL 11+ adds it
    # without rewriting the table, and only its CHECK (>= 0) reads the rows.

    dependencies = [
        ("ai", "0003_cached_answer"),
    ]

    operations = [
        migrations.AddField(
            model_name="aiusagemonthly",
            name="cache_write_tokens",
            field=models.PositiveBigIntegerField(default=0),
        ),
    ]
