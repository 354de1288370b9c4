"""The AI SDK clients the hub builds (ai.providers._sdk_client) follow the egress rule (integrations.egress):
through the proxy the environment names for their base URL's host, direct when NO_PROXY exempts it
(`egress_route` runs each test both ways), against a provider fake on a real socket."""

import asyncio

import httpx
import pytest

from ai import providers

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 1, "output_tokens": 1},
}


@pytest.fixture(autouse=True)
def sdk_clients():
    providers.reset_clients()
    yield
    providers.reset_clients()


def _ask(provider):
    async def ask():
        client = providers._sdk_client(provider)
        if provider == "anthropic":
            return await client.messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hello"}]
            )
        return await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )

    return asyncio.run(ask())


@pytest.mark.parametrize("provider", ["openai", "anthropic", "xai"])
def test_the_sdk_client_follows_the_egress_rule(provider, settings, served, egress_route):
    answer = MESSAGE if provider == "anthropic" else COMPLETION
    fake = served(lambda request: httpx.Response(200, json=answer), "https://ai.test")
    key, base = providers.CREDENTIALS[provider]
    setattr(settings, key, "sk-test")
    setattr(settings, base, fake.base + "/v1")

    _ask(provider)

    egress_route.check(fake.base)
