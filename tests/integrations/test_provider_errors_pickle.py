"""ProviderNotConfigured (and the other hub errors with their own __init__) survive pickling with every field.

Celery pickles a task's exception to hand it from the pool's worker process to the parent, and checks first
with `get_pickleable_exception`: an exception that cannot be rebuilt from its `args` is swapped for the nearest
base class that can be, so a ProviderNotConfigured arrived as a bare PermanentError whose `provider` was the
sentence and whose `missing` was gone, and the API's 503 `provider_not_configured` became a 502.
"""

import pickle

import pytest
from celery.utils.serialization import get_pickleable_exception

from integrations.errors import DomainError, ProviderNotConfigured, RateLimited

pytestmark = pytest.mark.django_db


def round_trip(exc):
    return pickle.loads(pickle.dumps(exc))


def test_provider_not_configured_round_trips_with_its_fields():
    exc = ProviderNotConfigured("twilio", ["TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID"])
    back = round_trip(exc)
    assert type(back) is ProviderNotConfigured
    assert back.provider == "twilio"
    assert back.missing == ["TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID"]
    assert (str(back), back.message, back.args) == (str(exc), exc.message, exc.args)
    assert back.as_api_error().as_dict() == {
        "error": "provider_not_configured",
        "detail": exc.message,
        "provider": "twilio",
        "missing": exc.missing,
    }


def test_celery_hands_on_provider_not_configured_itself_not_a_base_class():
    exc = ProviderNotConfigured("stripe", ["STRIPE_SECRET_KEY"])
    handed_on = get_pickleable_exception(exc)
    assert type(handed_on) is ProviderNotConfigured and handed_on.missing == ["STRIPE_SECRET_KEY"]


def test_a_task_failing_for_want_of_configuration_reports_provider_not_configured(settings):
    from payments.tasks import payment_cancel
    from tests.payments.factories import PaymentFactory

    settings.STRIPE_SECRET_KEY = ""
    payment = PaymentFactory(payment_intent_id="pi_live")
    result = payment_cancel.apply(args=(payment.pk,))
    assert result.failed()
    assert type(result.result) is ProviderNotConfigured, repr(result.result)
    assert (result.result.provider, result.result.missing) == ("stripe", ["STRIPE_SECRET_KEY"])


@pytest.mark.parametrize(
    "exc",
    [
        RateLimited("twilio", "+14155550100", 2.5, reserved=True),
        DomainError(409, "invoice_not_payable", "This invoice is already paid.", headers={"X-A": "1"}, status="paid"),
    ],
    ids=["RateLimited", "DomainError"],
)
def test_the_other_errors_with_their_own_init_round_trip_too(exc):
    back = round_trip(exc)
    assert type(back) is type(exc) and vars(back) == vars(exc) and back.args == exc.args
