from django.db import migrations, models


def count_media_already_received(apps, schema_editor):
    """Inbound messages kept Twilio's webhook payload in `raw`: their NumMedia is the count."""
    SmsMessage = apps.get_model("messaging", "SmsMessage")
    rows = (
        SmsMessage.objects.filter(direction="inbound", raw__has_key="NumMedia")
        .exclude(raw__NumMedia__in=["0", ""])
        .only("raw")
    )
    batch = []
    for sms in rows.iterator(chunk_size=1000):
        count = str(sms.raw.get("NumMedia") or "")
        if not count.isascii() or not count.isdigit() or not 0 < int(count) <= 32767:
            continue
        sms.num_media = int(count)
        batch.append(sms)
        if len(batch) == 1000:
            SmsMessage.objects.bulk_update(batch, ["num_media"])
            batch = []
    SmsMessage.objects.bulk_update(batch, ["num_media"])


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0008_sms_messaging_service"),
    ]

    operations = [
        migrations.AddField(
            model_name="smsmessage",
            name="num_media",
            field=models.PositiveSmallIntegerField(
                default=0, help_text="Media files (MMS) an inbound message came with; the files stay at Twilio."
            ),
        ),
        migrations.RunPython(count_media_already_received, migrations.RunPython.noop),
    ]
