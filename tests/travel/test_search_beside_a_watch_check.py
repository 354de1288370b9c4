"""A user's search is not turned away because a price watch's worker runs the same one."""

import threading
import time

import pytest
from django.db import connection

from integrations.gateway.runtime import task_context
from travel.serializers import SearchRequestSerializer
from travel.services import search as search_service

from . import test_cache
from .conftest import one_way, search
from .test_cache import _posts, _until_locked

pytestmark = pytest.mark.django_db
waiting = test_cache.waiting  # the fixture, reused


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_search_waits_for_the_identical_one_a_watch_check_is_running_in_a_worker(
    user, client_for, duffel, waiting, settings
):
    # Defaults: a web call may last 25 s, a worker's 60 s, and a search waits up to 30 s for an identical one.
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "duffel": {"web": 25.0, "task": 60.0}}
    settings.TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS = 30
    duffel.gate = threading.Event()
    body = one_way()
    params = SearchRequestSerializer(data=body)
    assert params.is_valid(), params.errors
    query = search_service.query_from_params(params.validated_data)

    def watch_check():  # what travel.services.watches.watch_check does, in a worker
        try:
            with task_context():
                search_service._fetch(query, search_service.search_key(query), user=user, refresh=False, max_age=600)
        finally:
            connection.close()

    leader = threading.Thread(target=watch_check)
    leader.start()
    _until_locked()
    client = client_for(user)
    client.get("/healthz")
    out = {}

    def user_search():
        try:
            client.get("/api/v1/travel/watches/")
            out["response"] = search(client, body)
        finally:
            connection.close()

    follower = threading.Thread(target=user_search)
    follower.start()
    deadline = time.monotonic() + 60
    while waiting.count() < 1 and follower.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    duffel.gate.set()  # Duffel answers the watch's search a moment later, as it usually does
    follower.join(60)
    leader.join(60)
    response = out["response"]
    assert response.status_code == 200, (response.status_code, response.content, response.get("Retry-After"))
    assert response.json()["cache"]["hit"] is True and _posts(duffel) == 1
