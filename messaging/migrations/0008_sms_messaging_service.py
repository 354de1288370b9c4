from django.db import migrations, models


def service_out_of_from_number(apps, schema_editor):
    """Messages sent through a messaging service kept its MG id as from_number: move it to messaging_service_sid,
    and take the number the service chose from the last status callback kept in `raw`, if any."""
    SmsMessage = apps.get_model("messaging", "SmsMessage")
    rows = SmsMessage.objects.filter(direction="outbound", from_number__startswith="MG").only("from_number", "raw")
    batch = []
    for sms in rows.iterator(chunk_size=1000):
        reported = str((sms.raw or {}).get("From") or "")
        sms.messaging_service_sid = sms.from_number[:34]
        sms.from_number = "" if reported.startswith("MG") else reported[:40]
        batch.append(sms)
        if len(batch) == 1000:
            SmsMessage.objects.bulk_update(batch, ["messaging_service_sid", "from_number"])
            batch = []
    SmsMessage.objects.bulk_update(batch, ["messaging_service_sid", "from_number"])


def service_back_into_from_number(apps, schema_editor):
    SmsMessage = apps.get_model("messaging", "SmsMessage")
    SmsMessage.objects.exclude(messaging_service_sid="").update(from_number=models.F("messaging_service_sid"))


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0007_e164_ascii_digits"),
    ]

    operations = [
        migrations.AddField(
            model_name="smsmessage",
            name="messaging_service_sid",
            field=models.CharField(
                blank=True,
                help_text="The Twilio messaging service (MG...) that picks the sender, if any.",
                max_length=34,
            ),
        ),
        migrations.AlterField(
            model_name="smsmessage",
            name="from_number",
            field=models.CharField(
                blank=True,
                help_text="The sender's number (or sender ID). Sent through a messaging service: empty until Twilio "
                "reports the number the service chose.",
                max_length=40,
            ),
        ),
        migrations.RunPython(service_out_of_from_number, service_back_into_from_number, elidable=True),
    ]
