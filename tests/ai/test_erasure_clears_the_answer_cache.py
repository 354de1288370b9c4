"""An expedited erasure deletes the user's cached AI answers at once (from Redis, or without it from the
database), not AI_CACHE_TTL_SECONDS later.

With the grace period (7 days) the answers (1 h by default) are long gone when the deletion runs; staff who
expedite an erasure run it within the TTL, and a cached answer quotes what the user asked.
"""

import contextlib
import json
import uuid
from collections import OrderedDict

import pytest
from django.core.cache.backends import locmem

from ai.models import CachedAnswer
from integrations.redis import get_client
from integrations.redis import key as redis_key
from privacy import erasure as erasure_service
from tests.ai.fakes import openai_chat

pytestmark = pytest.mark.django_db

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


@pytest.mark.redis  # the answers it deletes are kept in Redis
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


class TestWithoutRedis:
    """`make run` (no REDIS_URL): the web process answers from the cache, the worker runs the erasure.

    Each process has its own local-memory cache, so what the web process cached there is out of the worker's
    reach; the answers are kept where every process of make run looks instead (its database).
    """

    @pytest.fixture(autouse=True)
    def make_run_caches(self, settings):
        settings.REDIS_URL = ""
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "make-run"}
        }
        locmem._caches.pop("make-run", None)
        yield
        locmem._caches.pop("make-run", None)

    @staticmethod
    @contextlib.contextmanager
    def in_the_worker():
        """Run the block as another process would: with a local-memory cache of its own (empty)."""
        web = {
            name: (OrderedDict(held), dict(locmem._expire_info.get(name, {}))) for name, held in locmem._caches.items()
        }
        for name in web:
            locmem._caches[name].clear()
            locmem._expire_info.get(name, {}).clear()
        try:
            yield
        finally:
            for name, (held, expiry) in web.items():
                locmem._caches[name].clear()
                locmem._caches[name].update(held)
                locmem._expire_info.setdefault(name, {}).update(expiry)

    @staticmethod
    def cached_answers_quoting(text):
        """Every stored answer quoting `text` that the web process could still serve: its local memory, the database."""
        in_memory = [key for held in locmem._caches.values() for key, value in held.items() if text.encode() in value]
        in_database = [pk for pk, value in CachedAnswer.objects.values_list("pk", "value") if text in json.dumps(value)]
        return in_memory + in_database

    def test_an_expedited_erasure_in_the_worker_deletes_what_the_web_process_cached(
        self, fake_ai, complete, user, other_user, staff_user, client_for
    ):
        answer = f"{ANSWER} (make run)"
        fake_ai.add("openai", openai_chat(answer), openai_chat(f"{answer} for someone else"))
        assert complete(temperature=0).json()["cached"] is False
        assert complete(temperature=0).json()["cached"] is True
        complete(client=client_for(other_user), temperature=0)
        assert len(self.cached_answers_quoting(answer)) == 2

        erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
        with self.in_the_worker():
            assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

        (_,) = self.cached_answers_quoting(answer)  # only the other user's answer stays
        assert complete(client=client_for(other_user), temperature=0).json()["cached"] is True
        erasure.refresh_from_db()
        assert erasure.report["apps"]["ai"]["counts"]["ai.cached_answers"] == 1
