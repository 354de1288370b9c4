import factory

from payments.models import Customer, Invoice, Payment, Refund, Subscription
from tests.factories import UserFactory


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    user = factory.SubFactory(UserFactory)
    external_id = factory.Sequence(lambda n: f"cus_test{n}")


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice

    owner = factory.SubFactory(UserFactory)
    amount = 2500
    currency = "usd"
    description = "Consulting, November"
    status = Invoice.Status.OPEN


class PaymentFactory(factory.django.DjangoModelFactory):
    """A payment attempt that Stripe already knows (it has its PaymentIntent id)."""

    class Meta:
        model = Payment

    invoice = factory.SubFactory(InvoiceFactory)
    attempt = factory.Sequence(lambda n: n + 1)
    method = Payment.Method.INTENT
    status = Payment.Status.PENDING
    amount = factory.LazyAttribute(lambda p: p.invoice.amount)
    currency = factory.LazyAttribute(lambda p: p.invoice.currency)
    payment_intent_id = factory.Sequence(lambda n: f"pi_test{n}")
    idempotency_key = factory.LazyAttribute(lambda p: f"hub-invoice-{p.invoice.pk}-attempt-{p.attempt}")


class SucceededPaymentFactory(PaymentFactory):
    status = Payment.Status.SUCCEEDED
    invoice = factory.SubFactory(InvoiceFactory, status=Invoice.Status.PAID)


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    payment = factory.SubFactory(SucceededPaymentFactory)
    amount = 500
    idempotency_key = factory.Sequence(lambda n: f"hub-refund-f{n}")


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    owner = factory.SubFactory(UserFactory)
    external_id = factory.Sequence(lambda n: f"sub_test{n}")
    item_id = factory.Sequence(lambda n: f"si_test{n}")
    price_id = "price_basic"
    status = Subscription.Status.ACTIVE
