"""A completion reads its API token and its user's budget override from Redis in one round trip.

The process learns whose a token is the first time it authenticates it; from then on the completion view's
override key is read in the token's own MGET (integrations.auth.tokens.token_authenticate's `along`). The
token is still read every time, so a revoked token or a changed override acts on the very next request.
"""

import pytest

from ai.models import AiBudget
from integrations.models.tokens import ApiToken
from tests.ai.fakes import openai_chat

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


def _reads(round_trips):
    return [trip for trip in round_trips if trip in (["GET"], ["MGET"])]


def test_a_completion_reads_its_token_and_the_budget_override_in_one_round_trip(fake_ai, complete, redis_round_trips):
    fake_ai.add("openai", openai_chat("hello"), openai_chat("hello"))
    assert complete().status_code == 200  # this process learns whose the token is
    redis_round_trips.clear()
    assert complete().status_code == 200
    assert _reads(redis_round_trips) == [["MGET"]]


def test_an_override_staff_change_applies_to_the_next_completion(fake_ai, complete, user):
    fake_ai.add("openai", openai_chat("hello"), openai_chat("hello"))
    assert complete(max_tokens=100).status_code == 200
    budget = AiBudget.objects.create(owner=user, monthly_limit_usd=1000, max_tokens=50)
    resp = complete(max_tokens=100)
    assert resp.status_code == 400
    assert (resp.json()["error"], resp.json()["max_tokens_limit"]) == ("max_tokens_over_limit", 50)
    budget.delete()
    assert complete(max_tokens=100).status_code == 200


def test_a_revoked_token_is_refused_at_once_though_this_process_knows_whose_it_was(fake_ai, complete, user):
    fake_ai.add("openai", openai_chat("hello"))
    assert complete().status_code == 200
    ApiToken.objects.filter(user=user).delete()
    assert complete().status_code == 401


def test_what_an_earlier_request_read_along_is_not_handed_to_a_later_one(user):
    """Under a sync server a thread's context outlives its request: values read along by one request that never
    used them (refused before its budget hold) must not answer for a later request that read nothing along."""
    from django.core.cache import cache

    from integrations.auth import tokens

    _, key = tokens.token_create(user=user, name="along")

    def along(owner_id):
        return [f"test:along:{owner_id}"]

    cache.set(f"test:along:{user.pk}", {"max_tokens": 50})
    tokens.token_authenticate(key=key, along=along)  # this process learns whose the token is
    tokens.token_authenticate(key=key, along=along)  # read along in the token's MGET, never used
    cache.set(f"test:along:{user.pk}", {"max_tokens": 10})
    cache.delete(tokens._cache_key(tokens.token_digest(key)))  # the next request reads its token from the database
    tokens.token_authenticate(key=key, along=along)
    assert tokens.read_along(f"test:along:{user.pk}") is tokens.NOT_READ
