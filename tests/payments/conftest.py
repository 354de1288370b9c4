import pytest
import responses

from tests.payments import stripe_fakes


@pytest.fixture(autouse=True)
def stripe_configured(settings):
    settings.STRIPE_SECRET_KEY = stripe_fakes.SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_hub"
    settings.STRIPE_WEBHOOK_SECRET = stripe_fakes.WEBHOOK_SECRET
    settings.STRIPE_API_BASE = ""
    # Retries in tests: the same policy shape, without waiting.
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "stripe": {"base": 0.001, "cap": 0.001, "max_retries": 3}}


@pytest.fixture
def http():
    """Stripe's HTTP API, intercepted at the transport: the real SDK builds and parses every request."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def celery_eager():
    """Tasks run in-process when enqueued (a real Celery mode), so on_commit enqueues run at once."""
    from config.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


@pytest.fixture
def run_on_commit(celery_eager, django_capture_on_commit_callbacks):
    """Run everything a request or handler enqueued after commit (tasks eagerly, emails) inside the block."""
    return lambda: django_capture_on_commit_callbacks(execute=True)
