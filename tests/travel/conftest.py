import datetime as dt

import pytest
import respx

from config.celery import app as celery_app

from .duffel_fake import FakeDuffel

BASE = "https://duffel.test"


def day(n):
    """An ISO date n days from today (searches must be in the future)."""
    return (dt.date.today() + dt.timedelta(days=n)).isoformat()


@pytest.fixture
def duffel(settings):
    """Duffel configured and answered by the fake, intercepted at httpx's transport."""
    fake = FakeDuffel()
    settings.DUFFEL_ACCESS_TOKEN = fake.token
    settings.DUFFEL_API_BASE = BASE
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "duffel": {"requests": {"rate": 1000, "burst": 1000}}}
    with respx.mock(assert_all_called=False) as router:
        fake.respx_routes(router, BASE)
        yield fake


@pytest.fixture
def eager():
    """Tasks run inline when enqueued (after commit), as a worker would run them."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def one_way(origin="LHR", destination="JFK", days=30, **extra):
    return {"slices": [{"origin": origin, "destination": destination, "departure_date": day(days)}], **extra}


def search(client, body):
    return client.post("/api/v1/travel/searches/", body, format="json")
