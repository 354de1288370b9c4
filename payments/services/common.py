"""What the payments services share: Stripe timestamps, and adopting a Stripe object's row."""

import datetime as dt


def _ts(value):
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if isinstance(value, int | float) and value else None


def adopt(model, *, external_id, metadata, meta_key):
    """Our row for a Stripe object: by the Stripe id, else by our id in its metadata (then the Stripe id is stamped).

    Refunds and subscriptions we create carry our id in their metadata, so a
    webhook that arrives before the task stored the Stripe id still finds the row.
    """
    row = model.objects.filter(external_id=external_id).first()
    ref = str((metadata or {}).get(meta_key, ""))
    if row is None and ref.isdigit():
        row = model.objects.filter(pk=int(ref)).first()
        if row is not None:
            model.objects.filter(pk=row.pk, external_id="").update(external_id=external_id)
    return row
