"""Fee look-ups in batches (payments.payment_fees_record, task_base.ProviderTask.run_each): the successes of
one drained webhook batch go as one task, each payment's fee is still recorded exactly once, and one
payment's failure goes on alone without holding back or losing the others."""

import pytest
from django.utils import timezone

from integrations import outbox
from integrations.models import Alert, ProviderCall
from payments.models import Payment
from payments.tasks import payment_fee_record, payment_fees_record
from tests.payments import stripe_fakes as fakes
from tests.payments.factories import SucceededPaymentFactory

pytestmark = pytest.mark.django_db

PI_URL = f"{fakes.API}/v1/payment_intents"
FEE_KIND = "payments.payment_fee_record"


def _intent(payment, fee=59):
    return fakes.settled_intent(payment.payment_intent_id, fee=fee)


@pytest.fixture
def payments():
    rows = [SucceededPaymentFactory() for _ in range(3)]
    kind = next(k for k in outbox.kinds() if k.name == FEE_KIND)
    for row in rows:
        outbox.mark_enqueued(kind, row.pk)  # as payment_apply does when it queues the look-up
    return rows


@pytest.fixture
def retries_sent(monkeypatch):
    """The look-ups a batch hands on to payment_fee_record alone: (args, options), not run."""
    sent = []
    monkeypatch.setattr(payment_fee_record, "apply_async", lambda args=None, **options: sent.append((args, options)))
    return sent


def _fees():
    return {
        int(row["related_id"]): row
        for row in ProviderCall.objects.filter(operation="charge").values("related_id", "outcome", "attempt")
    }


def _rows(payments):
    return {p.pk: p for p in Payment.objects.filter(pk__in=[p.pk for p in payments])}


def test_each_payment_of_a_batch_gets_its_fee_recorded_once(payments, http):
    for payment in payments:
        http.get(f"{PI_URL}/{payment.payment_intent_id}", json=_intent(payment))

    payment_fees_record.apply(args=[[p.pk for p in payments]])
    payment_fees_record.apply(args=[[p.pk for p in payments]])  # a redelivery finds nothing left to do

    assert len(http.calls) == 3
    assert {pk: (f["outcome"], f["attempt"]) for pk, f in _fees().items()} == {p.pk: ("ok", 1) for p in payments}
    for row in _rows(payments).values():
        assert (row.fee_recorded, row.charge_id, row.next_attempt_at) == (True, f"ch_{row.payment_intent_id}", None)


def test_a_batch_writes_each_fee_in_one_statement_and_its_finished_rows_leave_the_outbox_together(payments, http):
    """Fewer commits per look-up (issue 11, CPU per event); a charge id the webhook already set is kept."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Payment.objects.filter(pk=payments[0].pk).update(charge_id="ch_from_webhook")
    for payment in payments:
        http.get(f"{PI_URL}/{payment.payment_intent_id}", json=_intent(payment))

    with CaptureQueriesContext(connection) as queries:
        payment_fees_record.apply(args=[[p.pk for p in payments]])

    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "payments_payment"')]
    # The charge id in the same statement (SQLite writes the boolean as 1).
    assert sum(('"fee_recorded" = true' in sql or '"fee_recorded" = 1' in sql) for sql in updates) == 3
    assert sum('"next_attempt_at" = NULL' in sql for sql in updates) == 1  # all three finished at once
    rows = _rows(payments)
    assert [rows[p.pk].charge_id for p in payments] == [
        "ch_from_webhook",
        f"ch_{payments[1].payment_intent_id}",
        f"ch_{payments[2].payment_intent_id}",
    ]
    assert all(row.fee_recorded and row.next_attempt_at is None for row in rows.values())


def test_a_payment_whose_look_up_fails_goes_on_alone_as_its_own_retry(payments, http, retries_sent):
    first, failing, last = payments
    http.get(f"{PI_URL}/{first.payment_intent_id}", json=_intent(first))
    http.get(f"{PI_URL}/{failing.payment_intent_id}", json={"error": {"type": "api_error"}}, status=500)
    http.get(f"{PI_URL}/{failing.payment_intent_id}", json=_intent(failing))
    http.get(f"{PI_URL}/{last.payment_intent_id}", json=_intent(last))
    started = timezone.now()

    payment_fees_record.apply(args=[[p.pk for p in payments]])

    rows = _rows(payments)
    assert (rows[first.pk].fee_recorded, rows[failing.pk].fee_recorded, rows[last.pk].fee_recorded) == (
        True,
        False,
        True,
    )
    [(args, options)] = retries_sent
    assert args == (failing.pk,) and options["retries"] == 1 and options["countdown"] >= 0
    assert rows[failing.pk].next_attempt_at > started  # the sweeper waits for that retry, then sends it
    assert rows[first.pk].next_attempt_at is None and rows[last.pk].next_attempt_at is None

    payment_fee_record.apply(args=[failing.pk], retries=1)  # the retry, when its countdown is up
    assert list(
        ProviderCall.objects.filter(operation="charge", related_id=str(failing.pk))
        .order_by("id")
        .values_list("attempt", "outcome")
    ) == [(1, "error"), (2, "ok")]
    assert Payment.objects.get(pk=failing.pk).fee_recorded is True
    assert not Alert.objects.exists()


def test_a_payment_stripe_refuses_for_good_gives_up_alone(payments, http, retries_sent):
    first, refused, last = payments
    http.get(f"{PI_URL}/{first.payment_intent_id}", json=_intent(first))
    http.get(
        f"{PI_URL}/{refused.payment_intent_id}",
        json={"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such intent"}},
        status=404,
    )
    http.get(f"{PI_URL}/{last.payment_intent_id}", json=_intent(last))

    payment_fees_record.apply(args=[[p.pk for p in payments]])

    rows = _rows(payments)
    assert [rows[p.pk].fee_recorded for p in payments] == [True, False, True]
    assert retries_sent == []  # a 404 is not retried, alone or in a batch
    assert rows[refused.pk].next_attempt_at is None  # out of the outbox: staff or reconciliation take over
    alert = Alert.objects.get(kind="task_failed")
    assert f"{FEE_KIND}({refused.pk},) gave up after 1 attempt(s)" in alert.message


def test_a_batch_out_of_rate_tokens_sends_the_rest_again_and_still_records_each_fee_once(
    payments, http, settings, monkeypatch
):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "stripe": {"requests": {"rate": 0.5, "burst": 1}}}
    for payment in payments:
        http.get(f"{PI_URL}/{payment.payment_intent_id}", json=_intent(payment))
    deferred = []
    original = payment_fees_record.apply
    monkeypatch.setattr(
        payment_fees_record, "apply", lambda args=None, **kw: deferred.append(args) or original(args=args, **kw)
    )

    payment_fees_record.apply(args=[[p.pk for p in payments]])  # eager: each deferred run happens inline

    ids = [p.pk for p in payments]
    assert [list(args) for args in deferred] == [
        [ids],
        [ids[1:]],
        [ids[2:]],
    ]  # the first run, then what was left each time
    assert {pk: f["outcome"] for pk, f in _fees().items()} == dict.fromkeys(ids, "ok")
    assert all(row.fee_recorded and row.next_attempt_at is None for row in _rows(payments).values())
