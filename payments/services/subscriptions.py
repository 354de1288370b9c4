"""Subscriptions: each change is a pending operation a task carries out on Stripe, once."""

from django.db import transaction
from django.db.models import F

from integrations.errors import PermanentError
from integrations.registry import require
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from ..models import Customer, Subscription
from ..providers import stripe as stripe_api
from .common import adopt
from .customers import customer_ensure
from .errors import InvalidTransition, OperationPending

SUBSCRIPTION_STATUS = {s.value for s in Subscription.Status} - {"pending", "failed"}
# Nothing left to cancel at Stripe in these.
ENDED = (Subscription.Status.CANCELED, Subscription.Status.INCOMPLETE_EXPIRED, Subscription.Status.FAILED)


def subscription_request(*, owner, price_id):
    """Create a pending subscription row; a task creates it on Stripe.

    Without Stripe configured nothing is created: the caller gets 503 provider_not_configured now, not a
    row that sits pending until its task fails.
    """
    from ..tasks import subscription_send

    require(stripe_api.PROVIDER)

    with transaction.atomic():
        sub = Subscription.objects.create(
            owner=owner, price_id=price_id, pending_operation=Subscription.Operation.CREATE, operation_seq=1
        )
        enqueue_on_commit(subscription_send, sub.pk)
    return sub


def _subscription_operation(*, subscription_id, operation, price_id=""):
    from ..tasks import subscription_send

    require(stripe_api.PROVIDER)

    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription_id)
        if sub.pending_operation:
            raise OperationPending(f"Subscription {sub.pk} already has a {sub.pending_operation} waiting for Stripe.")
        if not sub.external_id or sub.status in ("canceled", "incomplete_expired", "failed"):
            raise InvalidTransition(f"Subscription {sub.pk} is {sub.status}; it cannot be changed.")
        Subscription.objects.filter(pk=sub.pk).update(
            pending_operation=operation, pending_price_id=price_id, operation_seq=sub.operation_seq + 1, last_error=""
        )
        enqueue_on_commit(subscription_send, sub.pk)
    sub.refresh_from_db()
    return sub


def subscription_change_price(*, subscription_id, price_id):
    return _subscription_operation(
        subscription_id=subscription_id, operation=Subscription.Operation.CHANGE_PRICE, price_id=price_id
    )


def subscription_cancel(*, subscription_id, at_period_end):
    op = Subscription.Operation.CANCEL_AT_PERIOD_END if at_period_end else Subscription.Operation.CANCEL_NOW
    return _subscription_operation(subscription_id=subscription_id, operation=op)


def subscription_apply(*, sub, data, occurred_at=None):
    """Apply a StripeSubscription to our row: status by the state machine, fields unless stale."""
    changed = False
    if data.status in SUBSCRIPTION_STATUS:
        changed = transition(Subscription, sub.pk, data.status, occurred_at=occurred_at)
    rows = Subscription.objects.filter(pk=sub.pk)
    if occurred_at is not None:
        rows = rows.exclude(last_event_at__gt=occurred_at)
    fields = {"current_period_end": data.current_period_end, "cancel_at_period_end": data.cancel_at_period_end}
    if data.price_id:
        fields["price_id"] = data.price_id
    if data.item_id:
        fields["item_id"] = data.item_id
    if occurred_at is not None:
        fields["last_event_at"] = occurred_at
    changed = bool(rows.update(**fields)) or changed
    return changed


def subscription_send(*, subscription_id):
    """Task body: carry out the subscription's pending operation on Stripe, once."""
    sub = Subscription.objects.select_related("owner").filter(pk=subscription_id).first()
    if sub is None or not sub.pending_operation:
        return "skipped"
    op, key = sub.pending_operation, sub.operation_key
    owner = sub.owner
    if op == Subscription.Operation.CREATE:
        customer = customer_ensure(user=owner)
        data = stripe_api.subscription_create(
            customer=customer,
            price_id=sub.price_id,
            metadata={"hub_subscription_id": str(sub.pk)},
            idempotency_key=key,
            owner=owner,
            related=sub,
        )
        Subscription.objects.filter(pk=sub.pk, external_id="").update(external_id=data.id)
    elif op == Subscription.Operation.CHANGE_PRICE:
        item = sub.item_id or stripe_api.subscription_retrieve(sub.external_id, owner=owner).item_id
        data = stripe_api.subscription_change_price(
            sub.external_id, item_id=item, price_id=sub.pending_price_id, idempotency_key=key, owner=owner, related=sub
        )
    elif op == Subscription.Operation.CANCEL_AT_PERIOD_END:
        data = stripe_api.subscription_cancel_at_period_end(
            sub.external_id, idempotency_key=key, owner=owner, related=sub
        )
    else:
        data = stripe_api.subscription_cancel_now(sub.external_id, idempotency_key=key, owner=owner, related=sub)
    subscription_apply(sub=sub, data=data)
    Subscription.objects.filter(pk=sub.pk, pending_operation=op).update(pending_operation="", pending_price_id="")
    return op


def subscription_give_up(*, subscription_id, error):
    sub = Subscription.objects.filter(pk=subscription_id).first()
    if sub is None:
        return
    Subscription.objects.filter(pk=sub.pk).update(
        pending_operation="", pending_price_id="", last_error=str(error)[:2000]
    )
    # Only a refusal proves Stripe has no subscription; after timeouts it may
    # exist, and its webhook (carrying hub_subscription_id) will fill the row in.
    if sub.pending_operation == Subscription.Operation.CREATE and not getattr(error, "retryable", False):
        transition(Subscription, sub.pk, Subscription.Status.FAILED)


def subscription_upsert(*, data, occurred_at=None):
    """A StripeSubscription: ours by id or metadata, or one created elsewhere for a known customer."""
    sub = adopt(Subscription, external_id=data.id, metadata=data.metadata, meta_key="hub_subscription_id")
    if sub is None:
        customer = Customer.objects.filter(external_id=data.customer_id or "-").select_related("user").first()
        if customer is None:
            return None, False
        sub = Subscription.objects.create(
            owner=customer.user,
            external_id=data.id,
            price_id=data.price_id,
            status=Subscription.Status.PENDING,
        )
    return sub, subscription_apply(sub=sub, data=data, occurred_at=occurred_at)


def subscriptions_cancel_for_erasure(*, owner):
    """Erasure (privacy): cancel every live subscription of `owner` at Stripe now, not at the period's end.

    Runs inside the erasure task, synchronously, through the same pending operation and task body as a
    staff cancel (`subscription_send`: the gateway, the call log, one Idempotency-Key per operation), so
    the erasure does not go on to minimise the rows while Stripe still bills the card; an error leaves
    the erasure to retry (retryable) or to alert staff (permanent, e.g. Stripe not configured). A pending
    change of price is replaced by the cancel. Returns {"cancelled": n, "already_gone": n, "create_dropped": n}.
    """
    counts = {"cancelled": 0, "already_gone": 0, "create_dropped": 0}
    # Creates Stripe never confirmed: the outbox must not create them after the user is gone.
    for sub in Subscription.objects.filter(
        owner=owner, external_id="", pending_operation=Subscription.Operation.CREATE
    ):
        Subscription.objects.filter(pk=sub.pk, external_id="").update(pending_operation="", pending_price_id="")
        transition(Subscription, sub.pk, Subscription.Status.FAILED)
        counts["create_dropped"] += 1
    live = Subscription.objects.filter(owner=owner).exclude(external_id="").exclude(status__in=ENDED)
    for pk in live.values_list("pk", flat=True):
        Subscription.objects.filter(pk=pk).exclude(pending_operation=Subscription.Operation.CANCEL_NOW).update(
            pending_operation=Subscription.Operation.CANCEL_NOW,
            pending_price_id="",
            operation_seq=F("operation_seq") + 1,
        )
        try:
            subscription_send(subscription_id=pk)
        except PermanentError as exc:
            if exc.http_status != 404:
                raise
            # Stripe no longer has it (deleted with its customer, or cancelled long ago): nothing bills.
            Subscription.objects.filter(pk=pk).update(pending_operation="", pending_price_id="")
            transition(Subscription, pk, Subscription.Status.CANCELED)
            counts["already_gone"] += 1
        else:
            counts["cancelled"] += 1
    return counts
