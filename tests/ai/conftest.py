import httpx2
import pytest

from ai import providers
from tests.ai.fakes import BASE_URLS, KEYS, FakeAI


@pytest.fixture
def fake_ai(settings):
    """Every AI provider configured and answered by FakeAI; a short route for `simple`."""
    for name, value in {**BASE_URLS, **KEYS}.items():
        setattr(settings, name, value)
    settings.AI_ROUTES = {
        "simple": [["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"], ["gemini", "gemini-2.5-flash-lite"]],
        "writing": [["anthropic", "claude-sonnet-4-6"], ["openai", "gpt-4.1"]],
    }
    settings.AI_DEFAULT_TASK = "simple"
    settings.AI_DEADLINE_SECONDS = 10.0
    settings.AI_RETRY_WAIT_MAX_SECONDS = 1.0
    fake = FakeAI()
    providers.reset_clients()
    providers.http_client_factory = lambda: httpx2.Client(transport=httpx2.MockTransport(fake.handler))
    yield fake
    providers.http_client_factory = None
    providers.reset_clients()
    assert not fake.unexpected, f"requests nobody expected: {fake.unexpected}"


@pytest.fixture
def complete(user_client):
    def post(client=None, **body):
        body.setdefault("messages", [{"role": "user", "content": "Say hello"}])
        return (client or user_client).post("/api/v1/ai/completions/", body, format="json")

    return post
