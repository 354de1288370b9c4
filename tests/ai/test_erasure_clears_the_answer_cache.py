"""An expedited erasure deletes the user's cached AI answers from Redis at once, not AI_CACHE_TTL_SECONDS later.

With the grace period (7 days) the answers (1 h by default) are long gone when the deletion runs; staff who
expedite an erasure run it within the TTL, and a cached answer quotes what the user asked.
"""

import uuid

import pytest

from integrations.redis import get_client
from integrations.redis import key as redis_key
from privacy import erasure as erasure_service
from tests.ai.fakes import openai_chat

pytestmark = [pytest.mark.django_db, pytest.mark.redis]  # the answers it deletes are kept in Redis

# Unique per run: the Redis database outlives the test and answers stay there for the TTL.
ANSWER = f"Ada Lovelace's diagnosis, summarised ({uuid.uuid4().hex})"


def _cached_answers_quoting(text):
    client = get_client()
    assert client is not None, "these tests run against Redis (REDIS_URL)"
    return [
        k
        for k in client.scan_iter(match=redis_key("ai:completion:*"), count=500)
        if text in (client.get(k) or b"").decode()
    ]


def test_an_expedited_erasure_deletes_the_users_cached_answers(
    fake_ai, complete, user, other_user, staff_user, client_for
):
    fake_ai.add("openai", openai_chat(ANSWER), openai_chat(f"{ANSWER} for someone else"))
    assert complete(temperature=0).json()["cached"] is False
    assert complete(temperature=0).json()["cached"] is True  # the answer is in the cache
    complete(client=client_for(other_user), temperature=0)
    assert len(_cached_answers_quoting(ANSWER)) == 2

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    (left,) = _cached_answers_quoting(ANSWER)  # only the other user's answer stays
    assert "someone else" in get_client().get(left).decode()
