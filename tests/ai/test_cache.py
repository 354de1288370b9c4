import pytest

from ai import services
from ai.messages import parse_request
from ai.models import AiRequest, AiUsageMonthly
from tests.ai.fakes import KEYS, openai_chat

pytestmark = pytest.mark.django_db


def test_an_identical_temperature_0_request_is_answered_from_the_cache_at_no_cost(fake_ai, complete, user):
    fake_ai.add("openai", openai_chat("Deterministic", usage=(100, 10, 0)))
    first = complete(temperature=0).json()
    second = complete(temperature=0).json()
    assert first["cached"] is False and first["cost_usd"] != "0.000000"
    assert second["cached"] is True
    assert (second["content"], second["provider"], second["cost_usd"]) == ("Deterministic", "openai", "0.000000")
    assert second["usage"] == {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "cache_write_tokens": 0}
    assert len(fake_ai.to("openai")) == 1
    assert list(AiRequest.objects.order_by("id").values_list("outcome", flat=True)) == ["ok", "cached"]
    row = AiUsageMonthly.objects.get(owner=user)
    assert (row.requests, row.cached_requests, row.input_tokens) == (2, 1, 100)


def test_cache_false_opts_out_even_at_temperature_0(fake_ai, complete):
    fake_ai.add("openai", openai_chat("one"), openai_chat("two"))
    assert complete(temperature=0).json()["content"] == "one"
    assert complete(temperature=0, cache=False).json()["content"] == "two"
    # An opted-out answer is not stored either.
    fake_ai.add("openai", openai_chat("three"))
    assert complete(temperature=0.2, cache=False).json()["cached"] is False


def test_other_temperatures_are_cached_only_when_asked(fake_ai, complete):
    fake_ai.add("openai", openai_chat("warm"), openai_chat("warmer"), openai_chat("stored"))
    assert complete(temperature=0.7).json()["content"] == "warm"
    assert complete(temperature=0.7).json()["content"] == "warmer"  # no cache: true, so asked again
    assert complete(temperature=0.7, cache=True).json()["content"] == "stored"
    again = complete(temperature=0.7, cache=True).json()
    assert (again["content"], again["cached"]) == ("stored", True)


def test_requests_that_differ_in_anything_that_decides_the_answer_miss_the_cache(fake_ai, complete):
    fake_ai.add("openai", openai_chat("a"), openai_chat("b"), openai_chat("c"))
    complete(temperature=0)
    assert complete(temperature=0, max_tokens=5).json()["cached"] is False
    assert complete(temperature=0, messages=[{"role": "user", "content": "Say goodbye"}]).json()["cached"] is False


def test_answers_are_not_shared_between_users(fake_ai, complete, other_user, client_for):
    fake_ai.add("openai", openai_chat("mine"), openai_chat("theirs"))
    complete(temperature=0)
    assert complete(client=client_for(other_user), temperature=0).json()["cached"] is False


def test_the_cache_ttl_comes_from_settings(fake_ai, complete, settings):
    settings.AI_CACHE_TTL_SECONDS = 0  # Django: a timeout of 0 stores nothing
    fake_ai.add("openai", openai_chat("a"), openai_chat("b"))
    complete(temperature=0)
    assert complete(temperature=0).json()["cached"] is False


def test_cache_keys_hold_no_key_material(fake_ai, settings):
    params = {
        "task": "simple",
        "request": parse_request({"messages": [{"role": "user", "content": "hi"}], "temperature": 0}),
    }
    key = services.cache_key(owner_id=1, params=params)
    settings.OPENAI_API_KEY = "sk-rotated-key"
    assert services.cache_key(owner_id=1, params=params) == key
    assert not any(secret in key for secret in KEYS.values())


def test_an_openai_reasoning_model_is_asked_without_the_temperature_it_refuses(fake_ai, complete, settings):
    # gpt-5 and the o-series answer 400 unsupported_value to any temperature but their own: temperature 0 (the
    # way to ask for the cache) on the reasoning route would end the route. Other models still get it.
    settings.AI_ROUTES = {**settings.AI_ROUTES, "reasoning": [["openai", "gpt-5-mini"]]}
    fake_ai.add("openai", openai_chat("Thought it through", model="gpt-5-mini"), openai_chat("Hi"))
    first = complete(task="reasoning", temperature=0)
    assert first.status_code == 200, first.json()
    assert "temperature" not in fake_ai.to("openai")[0].json
    assert complete(task="reasoning", temperature=0).json()["cached"] is True  # still answered from the cache
    complete(temperature=0)
    assert fake_ai.to("openai")[1].json["model"] == "gpt-4o-mini"
    assert fake_ai.to("openai")[1].json["temperature"] == 0
