"""What the payments services share: adopting a Stripe object's row, money anomalies."""

from integrations.alerts import alert_raise
from integrations.models import Alert

from ..providers.stripe import PROVIDER


def adopt(model, *, external_id, metadata, meta_key):
    """Our row for a Stripe object: by the Stripe id, else by our id in its metadata (then the Stripe id is stamped).

    Refunds and subscriptions we create carry our id in their metadata, so a
    webhook that arrives before the task stored the Stripe id still finds the row.
    The metadata is only a hint: a row already bound to another Stripe object
    (metadata copied in the Dashboard, a second create after the idempotency key
    expired) is not this object's, so it is not returned, and staff get an alert;
    the caller then treats the object as one made outside the hub.
    """
    row = model.objects.filter(external_id=external_id).first()
    ref = str((metadata or {}).get(meta_key, ""))
    if row is not None or not ref.isdigit():
        return row
    row = model.objects.filter(pk=int(ref)).first()
    if row is None:
        return None
    if not row.external_id:
        if model.objects.filter(pk=row.pk, external_id="").update(external_id=external_id):
            row.external_id = external_id
        else:  # another delivery stamped it first: with which object?
            row.refresh_from_db(fields=["external_id"])
    if row.external_id != external_id:
        anomaly_alert(
            message=(
                f"Stripe {model._meta.model_name} {external_id} names our {model._meta.verbose_name} {row.pk} "
                f"in its metadata ({meta_key}), which is Stripe's {row.external_id}: not applied to it. "
                "Check Stripe for a duplicate."
            ),
            dedupe_key=f"payment_anomaly:{model._meta.model_name}:{external_id}",
        )
        return None
    return row


def anomaly_alert(*, message, dedupe_key):
    """A critical payment_anomaly alert: staff look at it; the caller applies nothing."""
    alert_raise(
        kind=Alert.Kind.PAYMENT_ANOMALY,
        provider=PROVIDER,
        severity=Alert.Severity.CRITICAL,
        message=message,
        dedupe_key=dedupe_key,
    )


def money_differs(*, expected, got, subject, ours, dedupe_key):
    """True, with an anomaly alert, when Stripe's (amount, currency) is not our row's.

    A signed event is genuine, but it may be about the wrong money. A missing
    amount or currency counts as a difference (it cannot be checked).
    """
    expected = (expected[0], (expected[1] or "").lower())
    got = (got[0], (got[1] or "").lower())
    if got == expected:
        return False
    anomaly_alert(
        message=(
            f"{subject} is for {got[0]} {got[1].upper()} (minor units); {ours} is "
            f"{expected[0]} {expected[1].upper()}: not applied."
        ),
        dedupe_key=dedupe_key,
    )
    return True
