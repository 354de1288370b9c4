"""Failure notices in batches (payments.payment_failed_notices): the failures of one drained webhook batch go as
one message, each owner is mailed once (one ProviderCall each), a failed send goes on to its own retry without
holding back the rest, and a message redelivered after its worker died mid-batch does not mail again those it
had already mailed (issue 11: one Celery task per failure notice was ~1/3 of the worker's CPU per event)."""

import os

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

from integrations.models import ProviderCall
from payments.models import Invoice
from payments.tasks import payment_failed_notices, payment_failed_notify
from tests.payments import stripe_fakes as fakes
from tests.payments.factories import InvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoices(user):
    return [InvoiceFactory(owner=user, amount=2500) for _ in range(3)]


@pytest.fixture
def retries_sent(monkeypatch):
    """The notices a batch hands on to payment_failed_notify alone: (args, options), not run."""
    sent = []
    monkeypatch.setattr(payment_failed_notify, "apply_async", lambda args=None, **options: sent.append((args, options)))
    return sent


def _sends():
    return list(ProviderCall.objects.filter(provider="email", operation="mail.send").values_list("outcome", flat=True))


def test_each_failure_of_a_batch_is_mailed_once_to_its_owner(invoices):
    payment_failed_notices.apply(args=[[[inv.pk, "card declined"] for inv in invoices]])

    assert sorted(m.subject for m in mail.outbox) == sorted(f"Payment failed for invoice {i.number}" for i in invoices)
    assert all("Reason: card declined." in m.body and m.to == [invoices[0].owner.email] for m in mail.outbox)
    assert _sends() == ["ok"] * 3


def test_a_failed_send_goes_on_alone_and_the_rest_are_mailed(invoices, retries_sent, monkeypatch):
    from django.core.mail.backends.locmem import EmailBackend

    real = EmailBackend.send_messages

    def refuse_the_second(self, messages):
        if invoices[1].number in messages[0].subject:
            raise ConnectionResetError("the mail server went away")
        return real(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", refuse_the_second)

    payment_failed_notices.apply(args=[[[inv.pk, "expired card"] for inv in invoices]])

    assert sorted(m.subject for m in mail.outbox) == sorted(
        f"Payment failed for invoice {i.number}" for i in (invoices[0], invoices[2])
    )
    [(args, options)] = retries_sent
    assert args == (invoices[1].pk, "expired card") and options["retries"] == 1


def test_a_redelivered_batch_mails_only_what_its_first_run_did_not(invoices, monkeypatch):
    from django.core.mail.backends.locmem import EmailBackend

    real = EmailBackend.send_messages
    items = [[inv.pk, "card declined"] for inv in invoices]

    def worker_dies_at_the_third(self, messages):
        if invoices[2].number in messages[0].subject:
            raise SystemExit("the worker was killed")  # not an error the batch hands on: the message is redelivered
        return real(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", worker_dies_at_the_third)
    with pytest.raises(SystemExit):
        payment_failed_notices.apply(args=[items], task_id="batch-msg-1")
    monkeypatch.setattr(EmailBackend, "send_messages", real)

    payment_failed_notices.apply(args=[items], task_id="batch-msg-1")  # the same message, delivered again

    assert sorted(m.subject for m in mail.outbox) == sorted(f"Payment failed for invoice {i.number}" for i in invoices)


def test_an_invoice_gone_or_without_an_owner_email_is_skipped(invoices):
    owner = invoices[0].owner
    Invoice.objects.filter(pk=invoices[1].pk).delete()

    payment_failed_notices.apply(args=[[[invoices[0].pk, ""], [invoices[1].pk, ""]]])

    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert "Reason: the payment was declined." in mail.outbox[0].body


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_drained_batch_of_failures_reaches_the_queue_as_one_message(user, monkeypatch):
    import redis

    from integrations.webhooks import webhook_drain
    from tests.integrations.outbox_kit import broker_at
    from tests.payments.test_webhooks import TestBatchDrain

    payments = [
        PaymentFactory(invoice=InvoiceFactory(owner=user, amount=2500), payment_intent_id=f"pi_fail{i}")
        for i in range(3)
    ]
    for payment in payments:
        evt = fakes.event("payment_intent.payment_failed", fakes.intent(payment, error=fakes.decline_error()))
        TestBatchDrain.store(evt)
    sent = []
    for task in (payment_failed_notify, payment_failed_notices):
        monkeypatch.setattr(
            task,
            "apply_async",
            lambda *args, task=task, original=task.apply_async, **kwargs: (
                sent.append((task.name, kwargs.get("args"))) or original(*args, **kwargs)
            ),
        )
    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    queue = "payments"
    broker.delete(queue)
    try:
        with broker_at(os.environ["REDIS_URL"]):
            assert webhook_drain(provider="stripe").counts == {"processed": 3}
        assert broker.llen(queue) == 1
    finally:
        broker.delete(queue)
    [(name, args)] = sent
    assert name == "payments.payment_failed_notices"
    assert sorted(invoice_id for invoice_id, _reason in args[0]) == sorted(p.invoice_id for p in payments)


class SessionCountingBackend(LocmemBackend):
    """Django's locmem backend, counting the sessions it opens as SMTP's would (open() True when it opened one)."""

    opened = []
    is_open = False

    def open(self):
        if self.is_open:
            return False
        self.is_open = True
        SessionCountingBackend.opened.append(self)
        return True

    def close(self):
        self.is_open = False


def test_a_batch_mails_through_one_session(invoices, settings):
    settings.EMAIL_BACKEND = f"{__name__}.SessionCountingBackend"
    SessionCountingBackend.opened.clear()

    payment_failed_notices.apply(args=[[[inv.pk, "card declined"] for inv in invoices]])

    assert len(mail.outbox) == 3
    assert len(SessionCountingBackend.opened) == 1
    assert not SessionCountingBackend.opened[0].is_open  # closed when the batch ended


def test_a_batch_deferred_for_a_rate_token_mails_every_notice_it_had_not(invoices, monkeypatch):
    """A worker's batch finds no limiter token for its second notice and re-sends the rest for later
    (ProviderTask._defer). That later message must mail the rest: the first run's done marks (by position, under
    the message id) must not make it skip notices it never mailed."""
    from celery import uuid
    from celery.app.trace import build_tracer

    from config.celery import app as celery_app
    from integrations import limiter
    from integrations.limiter import Decision

    takes = []

    def second_has_no_token(*args, **kwargs):
        takes.append(args)
        return Decision(granted=len(takes) != 2, wait=2.0)

    monkeypatch.setattr(limiter, "take", second_has_no_token)
    deferred = []
    monkeypatch.setattr(
        payment_failed_notices, "apply_async", lambda args=None, **options: deferred.append((args, options))
    )
    tracer = build_tracer(payment_failed_notices.name, payment_failed_notices, eager=False, app=celery_app)
    items, message_id = [[inv.pk, "card declined"] for inv in invoices], uuid()
    tracer(message_id, (items,), {}, request={"id": message_id, "is_eager": False})
    [(args, options)] = deferred

    # The deferred message, as a worker receives it when its token is due.
    task_id = options.get("task_id") or uuid()
    tracer(task_id, args, {}, request={"id": task_id, "is_eager": False, **options["headers"]})

    assert sorted(m.subject for m in mail.outbox) == sorted(f"Payment failed for invoice {i.number}" for i in invoices)


def test_a_redelivered_batch_does_not_mail_again_a_notice_it_had_handed_to_its_own_retry(
    invoices, retries_sent, monkeypatch
):
    """The second notice's send fails (the mail server went away) and goes on to its own retry; the worker then
    dies at the third. The redelivered message must leave the second to that retry, as a lone notice's message
    would have been done with once its retry was sent: else the owner is mailed twice."""
    from celery import uuid
    from django.core.mail.backends.locmem import EmailBackend

    real = EmailBackend.send_messages
    items, message_id = [[inv.pk, "card declined"] for inv in invoices], uuid()

    def second_fails_worker_dies_at_the_third(self, messages):
        if invoices[1].number in messages[0].subject:
            raise ConnectionResetError("the mail server went away")
        if invoices[2].number in messages[0].subject:
            raise SystemExit("the worker was killed")
        return real(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", second_fails_worker_dies_at_the_third)
    with pytest.raises(SystemExit):
        payment_failed_notices.apply(args=[items], task_id=message_id)
    monkeypatch.setattr(EmailBackend, "send_messages", real)

    payment_failed_notices.apply(args=[items], task_id=message_id)  # the same message, delivered again

    assert sorted(m.subject for m in mail.outbox) == sorted(
        f"Payment failed for invoice {i.number}" for i in (invoices[0], invoices[2])
    )
    assert [args for args, _options in retries_sent] == [(invoices[1].pk, "card declined")]  # its retry, once
