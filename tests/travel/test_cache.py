"""Identical searches are answered from the cache, never with an expired offer; concurrent ones make one call."""

import threading
import time
from types import SimpleNamespace

import orjson
import pytest
import time_machine
from django.core.cache import cache, caches
from django.db import connection

from integrations.cache import RedisCache
from integrations.models import ProviderCall
from travel import services
from travel.services import search as search_service

from .conftest import one_way, search
from .duffel_fake import default_offers, make_offer
from .factories import WatchFactory

pytestmark = pytest.mark.django_db


def _posts(duffel):
    return len(duffel.calls("POST", "/air/offer_requests"))


def test_an_identical_search_is_answered_from_the_cache(user_client, duffel):
    first = search(user_client, one_way())
    second = search(user_client, one_way())
    assert _posts(duffel) == 1
    assert first.json()["cache"]["hit"] is False and first["X-Cache"] == "MISS"
    assert second.json()["cache"]["hit"] is True and second["X-Cache"] == "HIT"
    assert second.json()["cache"]["age_seconds"] >= 0
    assert second.json()["offers"] == first.json()["offers"]
    assert ProviderCall.objects.filter(provider="duffel").count() == 1


def test_the_cache_is_shared_across_users_and_filters(user_client, other_user, client_for, duffel):
    search(user_client, one_way(sort="duration"))
    r = search(client_for(other_user), one_way(include_airlines=["BA"], cabin_class="economy"))
    assert r.json()["cache"]["hit"] is True
    assert [o["id"] for o in r.json()["offers"]] == ["off_0000BA"]
    assert _posts(duffel) == 1


def test_a_different_search_is_not_the_same_cache_entry(user_client, duffel):
    search(user_client, one_way())
    search(user_client, one_way(cabin_class="business"))
    search(user_client, one_way(passengers={"adults": 2}))
    search(user_client, one_way(days=31))
    assert _posts(duffel) == 4


def test_leaving_out_max_connections_is_the_same_search_as_duffels_default_of_one(user_client, duffel):
    # Duffel's offer request takes max_connections 1 when it is left out: one search, one provider call.
    search(user_client, one_way())
    r = search(user_client, one_way(max_connections=1))
    assert r.json()["cache"]["hit"] is True
    assert _posts(duffel) == 1
    # What omitted means is sent, not left to Duffel's default.
    assert duffel.calls("POST", "/air/offer_requests")[0][3]["data"]["max_connections"] == 1
    search(user_client, one_way(max_connections=0))
    search(user_client, one_way(max_connections=2))
    assert _posts(duffel) == 3


def test_a_watch_without_max_connections_shares_the_search_that_sent_one(user_client, user, duffel):
    search(user_client, one_way(max_connections=1))
    watch = WatchFactory(owner=user, max_connections=None)  # a watch made before omitted was stored as 1
    assert services.watch_check(watch_id=watch.pk) == "recorded"
    assert _posts(duffel) == 1


def test_going_live_never_answers_from_the_test_tokens_cache(user_client, duffel, settings):
    search(user_client, one_way())
    duffel.token = settings.DUFFEL_ACCESS_TOKEN = "duffel_live_fake_token"
    duffel.offers_for = lambda slices: [make_offer(slices, offer_id="off_LIVE", total="400.00")]
    r = search(user_client, one_way())
    assert r.json()["cache"]["hit"] is False
    assert [o["id"] for o in r.json()["offers"]] == ["off_LIVE"]
    assert _posts(duffel) == 2
    # A rotated token of the same mode searches the same content: the cache still answers.
    duffel.token = settings.DUFFEL_ACCESS_TOKEN = "duffel_live_rotated_token"
    assert search(user_client, one_way()).json()["cache"]["hit"] is True


def test_refresh_asks_the_provider_again(user_client, duffel):
    search(user_client, one_way())
    r = search(user_client, one_way(refresh=True))
    assert r.json()["cache"]["hit"] is False
    assert _posts(duffel) == 2
    assert search(user_client, one_way()).json()["cache"]["hit"] is True  # the refreshed answer is cached


def test_the_age_of_a_cached_answer_is_reported(user_client, duffel):
    with time_machine.travel("2026-12-02 12:00:00+00:00", tick=False) as clock:
        duffel.offers_for = lambda slices: [make_offer(slices, offer_id="off_1", total="100", expires_in=10**8)]
        search(user_client, one_way())
        clock.shift(600)
        assert search(user_client, one_way()).json()["cache"]["age_seconds"] == 600


def test_an_offer_is_never_shown_past_its_expires_at(user_client, duffel):
    duffel.offers_for = lambda slices: [
        make_offer(slices, offer_id="off_short", total="100", expires_in=60),
        make_offer(slices, offer_id="off_long", total="200", expires_in=1800),
    ]
    search(user_client, one_way())
    with time_machine.travel(search_service.time.time() + 120):
        r = search(user_client, one_way())
    assert r.json()["cache"]["hit"] is True
    assert [o["id"] for o in r.json()["offers"]] == ["off_long"]
    assert _posts(duffel) == 1


def test_once_every_cached_offer_has_expired_the_search_runs_again(user_client, duffel):
    duffel.offers_for = lambda slices: [make_offer(slices, offer_id="off_short", total="100", expires_in=60)]
    search(user_client, one_way())
    with time_machine.travel(search_service.time.time() + 120):
        r = search(user_client, one_way())
    assert r.json()["cache"]["hit"] is False
    assert _posts(duffel) == 2


def test_an_answer_without_offers_is_shared_for_a_minute_not_the_whole_cache_time(user_client, duffel, settings):
    # Duffel answers empty when no airline replied within its supplier timeout: flights may well exist.
    settings.TRAVEL_CACHE_TTL_SECONDS = 3600
    duffel.offers_for = lambda slices: []
    assert search(user_client, one_way()).json()["offer_count"] == 0
    with time_machine.travel(search_service.time.time() + 30):
        assert search(user_client, one_way()).json()["cache"]["hit"] is True
    duffel.offers_for = default_offers
    with time_machine.travel(search_service.time.time() + 61):
        r = search(user_client, one_way())
    assert r.json()["cache"]["hit"] is False and r.json()["offer_count"] > 0
    assert _posts(duffel) == 2


def test_a_cached_answer_copies_in_each_offer_as_it_was_stored(user_client, duffel):
    first = search(user_client, one_way()).json()
    key = search_service._cache_key(first["search_id"])
    entry = cache.get(key)
    # Each offer was written to JSON once, when the search was cached; answers do not write it again.
    assert [orjson.loads(o) for o in entry["offers"]] == first["offers"]
    entry["offers"][0] = entry["offers"][0].replace(b'"total_currency":"GBP"', b'"total_currency":"XTS"')
    cache.set(key, entry, 60)
    assert search(user_client, one_way()).json()["offers"][0]["total_currency"] == "XTS"


def test_an_entry_stored_before_offers_were_json_is_not_read(user_client, duffel):
    first = search(user_client, one_way()).json()
    entry = cache.get(search_service._cache_key(first["search_id"]))
    cache.delete(search_service._cache_key(first["search_id"]))
    old = {**entry, "offers": [orjson.loads(o) for o in entry["offers"]]}  # the v1 layout: offers as dicts
    cache.set(f"travel:search:v1:{first['search_id']}", old, 60)  # left by a server before this one
    r = search(user_client, one_way())
    assert r.status_code == 200 and r.json()["cache"]["hit"] is False
    assert [o["id"] for o in r.json()["offers"]] == [o["id"] for o in first["offers"]]
    assert _posts(duffel) == 2


def test_an_entry_stored_before_facts_named_each_flights_airlines_is_not_read(user_client, duffel):
    first = search(user_client, one_way()).json()
    entry = cache.get(search_service._cache_key(first["search_id"]))
    cache.delete(search_service._cache_key(first["search_id"]))
    old = {**entry, "facts": [{k: v for k, v in f.items() if k != "flights"} for f in entry["facts"]]}
    cache.set(f"travel:search:v2:{first['search_id']}", old, 60)  # left by a server before this one
    r = search(user_client, one_way(include_airlines=["BA"]))
    assert r.status_code == 200 and r.json()["cache"]["hit"] is False
    assert [o["id"] for o in r.json()["offers"]] == ["off_0000BA"]


@pytest.mark.redis
def test_the_cache_entry_lives_no_longer_than_its_latest_offer(user_client, duffel, settings):
    from integrations.redis import get_client

    settings.TRAVEL_CACHE_TTL_SECONDS = 3600
    duffel.offers_for = lambda slices: [make_offer(slices, offer_id="off_1", total="100", expires_in=300)]
    data = search(user_client, one_way()).json()
    key = cache.make_key(search_service._cache_key(data["search_id"]))
    assert 250 <= get_client().ttl(key) <= 300
    duffel.offers_for = default_offers  # 1800 s offers: the configured TTL wins
    data = search(user_client, one_way(days=40)).json()
    settings.TRAVEL_CACHE_TTL_SECONDS = 1200
    data = search(user_client, one_way(days=41)).json()
    assert 1100 <= get_client().ttl(cache.make_key(search_service._cache_key(data["search_id"]))) <= 1200


def _blocked(client, db):
    """Connections of this test database's Redis blocked in XREAD: searches waiting on a flight."""
    return [c for c in client.client_list() if c.get("db") == str(db) and c.get("cmd") == "xread"]


@pytest.fixture
def waiting(monkeypatch, settings):
    """Counts the searches blocked waiting for an identical one's answer, and fails one that sleeps instead."""
    settings.TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS = 300  # a waiter's patience is not what these tests measure
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        pytest.skip("REDIS_URL is not set: the local-memory cache is in use")
    redis = backend._cache.get_client(write=True)
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    real, slept = search_service.time, []

    def sleep(seconds):
        slept.append(seconds)
        raise AssertionError("a search slept in the request instead of waiting to be woken")

    monkeypatch.setattr(search_service, "time", SimpleNamespace(time=real.time, monotonic=real.monotonic, sleep=sleep))

    def until(n, timeout=240):
        deadline = real.monotonic() + timeout
        while len(_blocked(redis, db)) < n:
            assert not slept, "a search slept in the request instead of waiting to be woken"
            assert real.monotonic() < deadline, f"only {len(_blocked(redis, db))} of {n} searches waited for the first"
            real.sleep(0.01)

    return SimpleNamespace(until=until, count=lambda: len(_blocked(redis, db)), slept=slept)


def _until_locked(timeout=120):
    """Until a search holds the single-flight lock (it is at the provider, held by the fake's gate)."""
    redis = caches["default"]._cache.get_client(write=True)
    deadline = time.monotonic() + timeout
    while not any(redis.scan_iter(match="*travel:search:lock:*")):
        assert time.monotonic() < deadline, "the first search never reached the provider"
        time.sleep(0.01)


def _in_thread(client, body):
    """Search in a thread of its own (its own database connection); .join() returns the response."""
    out = {}

    def run():
        try:
            client.get("/api/v1/travel/watches/")  # this thread's connection first (see below)
            out["response"] = search(client, body)
        except Exception as exc:  # noqa: BLE001 - re-raised by join
            out["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()

    def join(timeout=120):
        thread.join(timeout)
        assert not thread.is_alive(), "the search is still waiting"
        if "error" in out:
            raise out["error"]
        return out["response"]

    return SimpleNamespace(join=join)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_identical_searches_make_one_provider_call(user, client_for, duffel, waiting):
    # The provider answers only once the other seven are waiting for its answer, however busy the machine.
    duffel.gate = threading.Event()
    clients = [client_for(user) for _ in range(8)]
    for c in clients:
        # Each test client builds its middleware on its first request; django-prometheus registers its
        # metrics then, and eight threads doing that at once collide. Build them one by one first.
        c.get("/healthz")
    barrier = threading.Barrier(8)
    answers = [None] * 8
    errors = []

    def run(i):
        try:
            # Open this thread's database connection (token auth) before the start line, so all eight
            # reach the search together even when a busy machine makes connecting slow.
            clients[i].get("/api/v1/travel/watches/")
            barrier.wait()
            answers[i] = search(clients[i], one_way())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    waiting.until(7)
    duffel.gate.set()
    for t in threads:
        t.join(120)
    assert errors == []
    assert [a.status_code for a in answers] == [200] * 8
    assert _posts(duffel) == 1
    assert ProviderCall.objects.filter(provider="duffel").count() == 1
    assert sorted(a.json()["cache"]["hit"] for a in answers) == [False] + [True] * 7
    assert len({tuple(o["id"] for o in a.json()["offers"]) for a in answers}) == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_concurrent_searches_share_the_providers_refusal_instead_of_repeating_it(user, client_for, duffel, waiting):
    duffel.gate = threading.Event()  # refused only once the other three wait for the answer
    duffel.fail_next(
        500,
        {
            "errors": [{"type": "api_error", "code": "internal", "title": "Oops", "message": "x"}],
            "meta": {"status": 500, "request_id": "r"},
        },
    )
    clients = [client_for(user) for _ in range(4)]
    for c in clients:
        c.get("/healthz")  # middleware built one by one (see above)
    barrier = threading.Barrier(4)
    codes = [None] * 4

    def run(i):
        try:
            clients[i].get("/api/v1/travel/watches/")  # this thread's connection first (see above)
            barrier.wait()
            codes[i] = search(clients[i], one_way()).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    waiting.until(3)
    duffel.gate.set()
    for t in threads:
        t.join(120)
    assert codes == [502] * 4
    assert _posts(duffel) == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_waiting_search_is_woken_the_moment_the_first_one_answers(user, client_for, duffel, waiting, settings):
    # The first search's call may last 300 s and the second would wait that long: only a wake-up ends it sooner.
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "duffel": {"web": 300.0, "task": 300.0}}
    duffel.gate = threading.Event()
    first, second = client_for(user), client_for(user)
    for c in (first, second):
        c.get("/healthz")  # middleware built one by one (see above)
    leader = _in_thread(first, one_way())
    _until_locked()
    follower = _in_thread(second, one_way())
    waiting.until(1)
    duffel.gate.set()
    answers = [leader.join(60), follower.join(60)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["cache"]["hit"] for a in answers] == [False, True]
    assert _posts(duffel) == 1 and waiting.count() == 0 and waiting.slept == []


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_search_whose_wait_outlasts_its_deadline_is_told_when_the_first_call_may_end(
    user, client_for, duffel, waiting, settings
):
    # The first search's call may last 25 s; the second waits its 2 s, then answers 503 with when to come back.
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "duffel": {"web": 25.0, "task": 60.0}}
    duffel.gate = threading.Event()
    first, second = client_for(user), client_for(user)
    for c in (first, second):
        c.get("/healthz")
    leader = _in_thread(first, one_way())
    _until_locked()
    settings.TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS = 2
    busy = search(second, one_way())
    assert busy.status_code == 503 and busy.json()["error"] == "search_busy"
    assert 20 <= int(busy["Retry-After"]) <= 25
    assert waiting.count() == 0 and waiting.slept == []
    duffel.gate.set()
    assert leader.join(60).status_code == 200
    again = search(second, one_way())
    assert again.status_code == 200 and again.json()["cache"]["hit"] is True
    assert _posts(duffel) == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_search_left_waiting_past_its_deadline_answers_503_and_frees_its_worker(
    user, client_for, duffel, waiting, settings
):
    # The first search runs past its own call's time (0.3 s); the second gives up at its 1 s deadline.
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "duffel": {"web": 0.3, "task": 60.0}}
    duffel.gate = threading.Event()
    first, second = client_for(user), client_for(user)
    for c in (first, second):
        c.get("/healthz")
    leader = _in_thread(first, one_way())
    _until_locked()
    settings.TRAVEL_SINGLE_FLIGHT_WAIT_SECONDS = 1
    busy = search(second, one_way())
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    assert waiting.slept == []
    duffel.gate.set()
    assert leader.join(60).status_code == 200
    assert _posts(duffel) == 1


def _first_page_in_a_request(user, **extra):
    """A search's first page as the view builds it, inside a request whose answer has not been sent yet:
    (the answer, the request's scope of work left for after its answer)."""
    from integrations.context import open_response_scope, reset_response_scope
    from travel.serializers import SearchRequestSerializer

    serializer = SearchRequestSerializer(data=one_way(**extra))
    assert serializer.is_valid(), serializer.errors
    scope, token = open_response_scope()
    try:
        answer = services.flight_search(user=user, params=serializer.validated_data)
    finally:
        reset_response_scope(token)
    return answer, scope


def test_the_leader_answers_before_it_caches_and_the_lock_stands_until_the_entry_is_written(user, duffel):
    answer, scope = _first_page_in_a_request(user)
    key = answer["search_id"]
    assert answer["cache"]["hit"] is False and len(answer["offers"]) == 4
    # The client's answer is built; the entry, the lock's release and the wake-up wait for it to be sent.
    assert cache.get(search_service._cache_key(key)) is None
    assert cache.get(search_service._lock_key(key)) is not None
    scope.run()
    assert cache.get(search_service._lock_key(key)) is None
    assert len(cache.get(search_service._cache_key(key))["offers"]) == 4


def test_a_next_page_asked_for_before_the_leader_cached_its_answer_waits_for_it(user, duffel):
    answer, scope = _first_page_in_a_request(user, limit=3)
    got = {}

    def next_page():
        try:
            got["page"] = services.flight_search_page(search_id=answer["search_id"], cursor=answer["next"])
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            got["error"] = exc

    asker = threading.Thread(target=next_page)
    asker.start()
    time.sleep(0.2)  # the page is asked for while the leader's answer is still on its way out
    scope.run()
    asker.join(30)
    assert "error" not in got, got.get("error")
    first = [o["id"] for o in orjson.loads(orjson.dumps(answer["offers"]))]
    later = [o["id"] for o in orjson.loads(orjson.dumps(got["page"]["offers"]))]
    assert got["page"]["offer_count"] == 4 and len(first) == 3 and len(later) == 1 and later[0] not in first
    assert _posts(duffel) == 1


def test_the_leader_writes_only_its_pages_offers_before_its_answer_and_caches_every_offers_json(
    user, duffel, monkeypatch
):
    written = []
    encode = search_service.encode_offer
    monkeypatch.setattr(search_service, "encode_offer", lambda offer: written.append(offer.id) or encode(offer))
    answer, scope = _first_page_in_a_request(user, limit=3)
    assert written == ["off_0000AA", "off_0000BA", "off_0000VS"]  # the client waits for its own page only
    scope.run()
    assert written[3:] == ["off_0000AF"]  # the rest once the answer is out, each offer written once
    entry = cache.get(search_service._cache_key(answer["search_id"]))
    assert all(isinstance(offer, bytes) for offer in entry["offers"])  # the cache holds JSON, never structs
    later = services.flight_search_page(search_id=answer["search_id"], cursor=answer["next"])
    assert [o["id"] for o in orjson.loads(orjson.dumps(later["offers"]))] == ["off_0000AF"]


def test_a_leader_that_cannot_cache_its_answer_still_frees_the_identical_searches(user, duffel, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("the cache is gone")

    monkeypatch.setattr(search_service, "set_and_delete", broken)
    answer, scope = _first_page_in_a_request(user)
    assert answer["cache"]["hit"] is False
    scope.run()  # the failure is logged there; the answer went out before
    assert cache.get(search_service._lock_key(answer["search_id"])) is None


def test_the_identical_searches_are_freed_before_the_call_log_is_written(user, duffel, monkeypatch):
    # Outside the ASGI server's batch writer the call's log row is also work left for after the answer: the
    # searches waiting on the lock come first, not after a database write they do not need.
    rows_when_cached = []
    real = search_service.set_and_delete

    def watched(*args, **kwargs):
        rows_when_cached.append(ProviderCall.objects.filter(provider="duffel").count())
        return real(*args, **kwargs)

    monkeypatch.setattr(search_service, "set_and_delete", watched)
    _, scope = _first_page_in_a_request(user)
    scope.run()
    assert rows_when_cached == [0]
    assert ProviderCall.objects.filter(provider="duffel").count() == 1


def test_a_searchs_cache_key_is_the_json_of_every_field_of_its_query_as_before():
    # The key is the JSON of the query's fields (dataclasses.asdict's, until canonical() built the same dict
    # itself): a key that moved would miss every cached search once after a deploy, a field left out would
    # answer one search with another's offers.
    import dataclasses
    import json

    from travel.providers import SearchQuery, SliceQuery

    query = SearchQuery(
        slices=(SliceQuery("LHR", "JFK", "2027-03-01", "07:30", None), SliceQuery("JFK", "CDG", "2027-03-09")),
        adults=2,
        child_ages=(4, 9),
        infants=1,
        cabin_class="business",
        max_connections=0,
    )
    assert json.dumps(query.canonical(), sort_keys=True) == json.dumps(dataclasses.asdict(query), sort_keys=True)
    assert set(query.canonical()) == {f.name for f in dataclasses.fields(SearchQuery)}


@pytest.mark.redis
def test_a_search_not_in_the_cache_reads_it_and_takes_its_lock_in_one_round_trip(
    user_client, duffel, redis_round_trips
):
    search(user_client, one_way(days=40))  # the scripts are loaded on first use
    redis_round_trips.clear()
    assert search(user_client, one_way()).status_code == 200
    # The token's user, the inbound limit's count, the cache read and the lock (one script), Duffel's
    # outbound limit, then the answer cached with the lock dropped and the flight woken: five round trips.
    assert redis_round_trips == [["GET"], ["EVALSHA"], ["EVALSHA"], ["EVALSHA"], ["SET", "DEL", "XADD", "EXPIRE"]]
    redis_round_trips.clear()
    assert search(user_client, one_way()).json()["cache"]["hit"] is True
    assert redis_round_trips == [["GET"], ["EVALSHA"], ["EVALSHA"]]  # a cached answer: three
