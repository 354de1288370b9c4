"""Who verifies each provider's deliveries and who handles each event type.

Domain apps register both in their own `webhooks.py`, which the integrations
app imports at start-up (`autodiscover_modules("webhooks")`), so a web process
and a worker see the same registry:

    from integrations.webhooks import webhook_handler, webhook_verifier

    @webhook_verifier("stripe")
    def verify(request): ...               # -> InboundEvent, or raise WebhookRejected

    @webhook_handler("stripe", "invoice.paid", "invoice.payment_failed")
    def on_invoice(event): ...             # event is the locked WebhookEvent

    @webhook_handler("stripe", "*")        # optional fallback for other types
    def on_other(event): ...

    @webhook_ordering_key("stripe")        # optional: events of one object in event-time order
    def object_of(payload): ...            # -> "pi_123" (or "" for no constraint)

    @webhook_batch_preparer("stripe")      # optional: once per drained batch, before its handlers
    def prefetch(events): ...              # e.g. one query for the rows the handlers read

    webhook_handlers_rarely_raise("stripe")  # optional: a batch's handlers share one savepoint
"""

from django.core.exceptions import ImproperlyConfigured

FALLBACK = "*"

# (provider, event type or "*") -> handler(event)
HANDLERS = {}
# provider -> verify(request) for the generic route POST /webhooks/<provider>/
VERIFIERS = {}
# provider -> key(payload) -> the object an event is about, for per-object ordering
ORDERING_KEYS = {}
# provider -> prepare(events), run once per drained batch before its handlers
BATCH_PREPARERS = {}
# name -> finish(events): every provider's events that are done with their payload (see webhook_batch_finisher)
BATCH_FINISHERS = {}
# providers whose handlers a drained batch runs together in one savepoint (see webhook_handlers_rarely_raise)
RARELY_RAISE = set()


def _register(table, key, fn, what):
    existing = table.get(key)
    # The same function registered twice is a module imported twice (autoreload), not a clash.
    if existing is not None and _qualname(existing) != _qualname(fn):
        raise ImproperlyConfigured(f"Two {what}s registered for {key}: {_qualname(existing)} and {_qualname(fn)}.")
    table[key] = fn


def _qualname(fn):
    # A verifier may be a WebhookVerifier instance: name it by its class.
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{named.__module__}.{named.__qualname__}"


def webhook_handler(provider, *event_types):
    """Register the decorated function as the handler of these event types ("*" = any other type).

    A handler receives the WebhookEvent (row locked, inside a savepoint). It
    must be idempotent and tolerate events out of order (compare
    `event.occurred_at` with what the row already holds). Raise WebhookIgnored
    to mark the event ignored, WebhookPermanentError to fail without retries;
    any other exception fails this attempt and is retried with backoff.
    """
    if not event_types:
        raise TypeError("webhook_handler needs at least one event type (or '*').")

    def decorator(fn):
        for event_type in event_types:
            _register(HANDLERS, (provider, event_type), fn, "webhook handler")
        return fn

    return decorator


def webhook_verifier(provider):
    """Register the decorated verify(request) -> InboundEvent for POST /webhooks/<provider>/."""

    def decorator(fn):
        _register(VERIFIERS, provider, fn, "webhook verifier")
        return fn

    return decorator


def webhook_ordering_key(provider):
    """Register key(payload) -> str naming the provider object an event is about ("" = none).

    The drain applies the events of one object in the provider's event-time
    order: an event waits while an earlier event of the same object is still
    unprocessed or failed with retries left. It runs in the webhook request, on
    the verified payload, so it must be cheap and must not raise.
    """

    def decorator(fn):
        _register(ORDERING_KEYS, provider, fn, "webhook ordering key")
        return fn

    return decorator


def webhook_batch_preparer(provider):
    """Register prepare(events), run once per drained batch of this provider's events, before their handlers.

    For what a batch can do once instead of once per event: typically one
    query for the rows its handlers will read, left on the events for them
    (`event.<something>`). It runs inside the batch's transaction, in a
    savepoint of its own; if it raises, the drain logs it and handles the
    batch without it. So what it leaves must be a shortcut only: every handler
    still works, with the same effect, on an event it did not prepare.
    """

    def decorator(fn):
        _register(BATCH_PREPARERS, provider, fn, "webhook batch preparer")
        return fn

    return decorator


def webhook_batch_finisher(name):
    """Register finish(events), run once per drained batch (any provider) on the events that no longer need
    their payload: processed, ignored, or failed for good. For what must not stay in a payload once it has
    been handled (privacy: an erased user's data in a late delivery). It runs inside the batch's transaction,
    in a savepoint of its own; if it raises, the drain logs it and commits the batch all the same."""

    def decorator(fn):
        _register(BATCH_FINISHERS, name, fn, "webhook batch finisher")
        return fn

    return decorator


def webhook_handlers_rarely_raise(provider):
    """Declare that `provider`'s handlers raise only for an event that is really wrong (no WebhookIgnored in
    the normal course), so a drained batch runs them together in one savepoint instead of one each.

    A batch in which one of them raises is rolled back to that savepoint and run again with a savepoint per
    handler, as any other provider's batch runs: the same outcome, paid for by running the handlers before
    it twice (already within a handler's contract: a worker that dies mid-batch has them run again too).
    """
    RARELY_RAISE.add(provider)


def handlers_rarely_raise(provider):
    return provider in RARELY_RAISE


def batch_finishers():
    return list(BATCH_FINISHERS.values())


def batch_preparer_for(provider):
    return BATCH_PREPARERS.get(provider)


def ordering_key_for(provider):
    return ORDERING_KEYS.get(provider)


def handler_for(provider, event_type):
    return HANDLERS.get((provider, event_type)) or HANDLERS.get((provider, FALLBACK))


def verifier_for(provider):
    return VERIFIERS.get(provider)
