"""Quotas in Gmail's own units on the shared limiter; a Gmail that plays its per-user limit."""

import pytest
import time_machine
from django.utils import timezone

from integrations.errors import ProviderRateLimited
from integrations.models import ProviderCall
from messaging.mail import services
from messaging.mail.models import MailMessage

from .conftest import google_conn
from .fake_gmail import make_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def local_limiter(settings):
    # The clock is moved by time_machine, which Redis's own clock (the Lua limiter) would ignore:
    # this test runs the limiter's single-machine twin, the same arithmetic on time.time().
    settings.REDIS_URL = ""


def test_a_burst_of_500_fetches_is_paced_and_never_rejected(
    gmail, user, eager, local_limiter, monkeypatch, django_capture_on_commit_callbacks
):
    from integrations.task_base import ProviderTask

    for n in range(500):
        gmail.add(make_message(n))
    conn = google_conn(user)
    ids = list(gmail.order)
    deferrals = []
    original = ProviderTask._defer
    with time_machine.travel(timezone.now(), tick=False) as clock:

        def defer_then_wait(self, args, kwargs, *, countdown, prepaid):
            deferrals.append(countdown)
            clock.shift(countdown)  # the worker would run it this much later
            return original(self, args, kwargs, countdown=countdown, prepaid=prepaid)

        monkeypatch.setattr(ProviderTask, "_defer", defer_then_wait)
        with django_capture_on_commit_callbacks(execute=True):
            assert services.messages_fetch_paced(connection_id=conn.pk, message_ids=ids) == 10
    assert gmail.rejected == 0
    assert MailMessage.objects.count() == 500
    assert len(gmail.batch_parts) == 500 and sum(1 for r in gmail.requests if r[1] == "/batch/gmail/v1") == 10
    # 2,500 units at 250 per second: the batches after the first are spread over about 9 seconds.
    assert len(deferrals) == 9 and sum(deferrals) == pytest.approx(9.0, abs=1.0)
    assert ProviderCall.objects.filter(provider="gmail", outcome="ok").count() == 10


def test_without_pacing_the_same_burst_is_refused_by_gmail(gmail, user, local_limiter, settings):
    """The control: the fake really enforces Gmail's per-user limit."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "gmail": {}}
    for n in range(500):
        gmail.add(make_message(n))
    conn = google_conn(user)
    with pytest.raises(ProviderRateLimited):
        services.messages_fetch(connection_id=conn.pk, message_ids=list(gmail.order))
    assert gmail.rejected > 0


def test_gmail_403_rate_limit_is_retryable_and_daily_quota_is_not():
    import httplib2

    from integrations.errors import QuotaExceeded
    from messaging.mail.providers.gmail import translate

    def resp(status):
        return httplib2.Response({"status": status})

    rate = translate(
        resp(403), b'{"error": {"code": 403, "errors": [{"reason": "userRateLimitExceeded"}], "message": "slow"}}'
    )
    assert isinstance(rate, ProviderRateLimited) and rate.retryable
    daily = translate(
        resp(403), b'{"error": {"code": 403, "errors": [{"reason": "dailyLimitExceeded"}], "message": "done"}}'
    )
    assert isinstance(daily, QuotaExceeded) and not daily.retryable


def test_the_per_project_daily_budget_is_shared_by_every_user_and_refuses_before_gmail_is_called(
    gmail, user, other_user, client_for, settings
):
    # A project budget with room for one send (100 units) and a daily refill far below a second one.
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "gmail": {
            "requests": {"rate": 250, "burst": 300},
            "scopes": {"project": {"requests": {"rate": 100 / 86400, "burst": 150}}},
        },
    }
    first = client_for(user).post(
        f"/api/v1/mail/{google_conn(user).pk}/messages/send/", {"to": ["a@example.com"], "text": "1"}, format="json"
    )
    assert first.status_code == 202, first.content
    # Another user's connection draws on the same project budget: refused, and Gmail never sees it.
    second = client_for(other_user).post(
        f"/api/v1/mail/{google_conn(other_user).pk}/messages/send/",
        {"to": ["b@example.com"], "text": "2"},
        format="json",
    )
    assert second.status_code == 503, second.content
    assert second.json()["error"] == "rate_limited_outbound" and second.json()["provider"] == "gmail"
    assert int(second["Retry-After"]) > 3600  # the 50 units missing come back at 100 a day
    assert len(gmail.sent) == 1
    assert ProviderCall.objects.filter(provider="gmail", operation="messages.send", outcome="ok").count() == 1
