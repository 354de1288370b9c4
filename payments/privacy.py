"""What payments holds about a user (privacy registry). Invoices and what paid them are kept, minimised."""

from privacy.erasure import gave_up_alerts_redact
from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import Customer, Invoice, Payment, Refund, Subscription
from .services import subscriptions_cancel_for_erasure

LAW = (
    "tax and accounting law (e.g. 10 years in Germany, 6 in the UK): amounts, currency, dates, status and Stripe "
    "ids stay, owner replaced by a pseudonym, free texts cleared"
)


def export_payments(user, out):
    out.json(
        "payments",
        {
            "customer": rows(Customer.objects.filter(user=user), ("external_id", "created_at")),
            "invoices": rows(Invoice.objects.filter(owner=user), exclude=("owner",)),
            "payments": rows(Payment.objects.filter(invoice__owner=user), exclude=("idempotency_key",)),
            "refunds": rows(Refund.objects.filter(payment__invoice__owner=user), exclude=("idempotency_key",)),
            "subscriptions": rows(Subscription.objects.filter(owner=user), exclude=("owner",)),
        },
        description="Invoices, payment attempts, refunds and subscriptions (amounts in minor units, Stripe ids).",
    )


def erase_payments(user, report):
    # First, while the rows still name the user: Stripe must stop billing before anything is minimised.
    for outcome, n in subscriptions_cancel_for_erasure(owner=user).items():
        for _ in range(n):
            report.provider_count("stripe.subscriptions", outcome)
    pseudonym = report.pseudonym_user
    # While the invoices are still the user's: the failure notice's "gave up" alert quotes Stripe's decline message
    # (its argument), the text cleared from the payments below.
    invoices = set(Invoice.objects.filter(owner=user).values_list("pk", flat=True))
    report.count(
        "integrations.Alert.redacted", gave_up_alerts_redact(rows={"payments.payment_failed_notify": invoices})
    )
    report.count("payments.Customer", Customer.objects.filter(user=user).delete()[0])
    report.count(
        "payments.Payment.minimised",
        Payment.objects.filter(invoice__owner=user).update(failure_message=""),
    )
    report.count(
        "payments.Refund.minimised",
        Refund.objects.filter(payment__invoice__owner=user).update(failure_reason=""),
    )
    Refund.objects.filter(requested_by=user).update(requested_by=None)
    report.count(
        "payments.Subscription.minimised",
        Subscription.objects.filter(owner=user).update(owner=pseudonym, last_error=""),
    )
    report.count(
        "payments.Invoice.minimised",
        Invoice.objects.filter(owner=user).update(owner=pseudonym, description=""),
    )


def references(user):
    refs = set(Customer.objects.filter(user=user).exclude(external_id="").values_list("external_id", flat=True))
    refs |= set(Invoice.objects.filter(owner=user).exclude(external_id="").values_list("external_id", flat=True))
    refs |= set(Subscription.objects.filter(owner=user).exclude(external_id="").values_list("external_id", flat=True))
    for pi, cs, ch, du in Payment.objects.filter(invoice__owner=user).values_list(
        "payment_intent_id", "checkout_session_id", "charge_id", "dispute_id"
    ):
        refs |= {pi, cs, ch, du}
    refs |= set(Refund.objects.filter(payment__invoice__owner=user).values_list("external_id", flat=True))
    return refs - {""}


register(
    PrivacyHolder(
        app="payments",
        models=(
            "payments.Customer",
            "payments.Invoice",
            "payments.Payment",
            "payments.Refund",
            "payments.Subscription",
        ),
        export=export_payments,
        erase=erase_payments,
        references=references,
        keep={
            "payments.Invoice": LAW,
            "payments.Payment": LAW,
            "payments.Refund": LAW,
            "payments.Subscription": LAW,
        },
        description=(
            "Your Stripe customer id, invoices, payments, refunds and subscriptions (cancelled at Stripe when you "
            "are erased). Card details stay at Stripe."
        ),
        retention="invoices and payments as tax law requires (minimised at erasure); the customer link until erasure.",
    )
)
