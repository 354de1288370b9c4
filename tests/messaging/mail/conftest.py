from datetime import timedelta

import pytest
from django.utils import timezone

from tests.integrations.factories import ConnectionFactory

from .fake_gmail import FakeGmail, make_message

GMAIL = "https://www.googleapis.com/auth/gmail."
GRAPH = "https://graph.microsoft.test/v1.0"
ALL_GMAIL = [f"{GMAIL}modify", f"{GMAIL}send", f"{GMAIL}compose", f"{GMAIL}labels"]


@pytest.fixture
def gmail(settings):
    settings.APP_URL = "https://hub.example.com"
    settings.GOOGLE_CLIENT_ID = "google-client-id"
    settings.GOOGLE_CLIENT_SECRET = "google-client-secret"
    fake = FakeGmail()
    settings.GMAIL_API_BASE = fake.base
    yield fake
    fake.stop()


@pytest.fixture
def graph_settings(settings):
    settings.APP_URL = "https://hub.example.com"
    settings.MICROSOFT_CLIENT_ID = "ms-client-id"
    settings.MICROSOFT_CLIENT_SECRET = "ms-client-secret"
    settings.GRAPH_API_BASE = GRAPH
    return settings


def google_conn(user, *, scopes=ALL_GMAIL, **kw):
    return ConnectionFactory(
        owner=user,
        provider="google_oauth",
        account="ada@example.com",
        capabilities=["mail"],
        scopes=list(scopes),
        access_token="ya29.mail-token",
        expires_at=timezone.now() + timedelta(hours=1),
        **kw,
    )


def ms_conn(user, *, scopes=("Mail.ReadWrite", "Mail.Send", "User.Read"), **kw):
    return ConnectionFactory(
        owner=user,
        provider="microsoft_oauth",
        account="grace@contoso.com",
        capabilities=["mail"],
        scopes=list(scopes),
        access_token="eyJ-graph-token",
        expires_at=timezone.now() + timedelta(hours=1),
        **kw,
    )


@pytest.fixture
def eager():
    from config.celery import app as celery_app

    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True  # a failing task fails the test instead of vanishing
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


__all__ = ["make_message"]
