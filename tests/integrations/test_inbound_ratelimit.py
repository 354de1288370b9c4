import pytest
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.ratelimit import ratelimit

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


class LimitedView(APIView):
    @ratelimit(group="test.limited", rate="3/m")
    def post(self, request):
        return Response({"ok": True})


urlpatterns = [path("limited/", LimitedView.as_view())]


def test_the_fourth_request_in_a_minute_is_a_json_429_with_retry_after(user_client, still_clock):
    assert [user_client.post("/limited/").status_code for _ in range(3)] == [200, 200, 200]
    resp = user_client.post("/limited/")
    assert resp.status_code == 429
    assert 1 <= int(resp["Retry-After"]) <= 60
    assert resp.json()["error"] == "rate_limited" and resp.json()["retry_after"] == int(resp["Retry-After"])


def test_token_users_are_counted_separately(user_client, client_for, other_user, still_clock):
    for _ in range(3):
        user_client.post("/limited/")
    assert user_client.post("/limited/").status_code == 429
    assert client_for(other_user).post("/limited/").status_code == 200


class PerUserView(APIView):
    @ratelimit(group="test.per_user", rate="2/m", key="user")
    def post(self, request):
        return Response({"ok": True})


class PerHeaderView(APIView):
    # A key django-ratelimit reads itself (an accessor), not one of its simple keys.
    @ratelimit(group="test.per_header", rate="2/m", key="header:x-client")
    def post(self, request):
        return Response({"ok": True})


class UnlimitedView(APIView):
    # A rate callable may answer None: no limit for this request (django-ratelimit's rule).
    @ratelimit(group="test.unlimited", rate=lambda group, request: None)
    def post(self, request):
        return Response({"ok": True})


urlpatterns += [
    path("per-user/", PerUserView.as_view()),
    path("per-header/", PerHeaderView.as_view()),
    path("unlimited/", UnlimitedView.as_view()),
]


@pytest.fixture
def redis_cache():
    from django.core.cache import caches

    from integrations.cache import RedisCache

    if not isinstance(caches["default"], RedisCache):
        pytest.skip("REDIS_URL is not set: the local-memory cache is in use")
    return caches["default"]


def _usage(user, group, rate, key):
    """What django-ratelimit itself reads for this user's window (without counting)."""
    from django.test import RequestFactory
    from django_ratelimit.core import get_usage

    request = RequestFactory().post("/")
    request.user = user
    return get_usage(request, group=group, rate=rate, key=key, increment=False)


@pytest.mark.redis
def test_on_redis_a_limited_request_is_counted_in_one_round_trip(
    user_client, redis_cache, redis_round_trips, still_clock
):
    user_client.post("/limited/")  # the first request of the window creates the count (and loads the script)
    redis_round_trips.clear()
    assert user_client.post("/limited/").status_code == 200
    # The token's user (auth's cache) and the count: django-ratelimit alone would be an add and an incr.
    counted = [trip for trip in redis_round_trips if trip != ["GET"]]
    assert counted == [["EVALSHA"]]


@pytest.mark.redis
def test_on_redis_the_count_is_django_ratelimits_own(user, user_client, redis_cache, still_clock):
    # The same key, window and stored value: a rolling deploy neither resets nor doubles a user's count.
    assert _usage(user, "test.limited", "3/m", "user_or_ip")["count"] == 0
    user_client.post("/limited/")
    user_client.post("/limited/")
    assert _usage(user, "test.limited", "3/m", "user_or_ip")["count"] == 2


@pytest.mark.redis
def test_on_redis_the_count_expires_with_django_ratelimits_window(user, user_client, redis_cache, still_clock):
    from django_ratelimit.core import _get_window, _make_cache_key

    user_client.post("/limited/")
    user_client.post("/limited/")
    key = redis_cache.make_and_validate_key(
        _make_cache_key("test.limited", _get_window(str(user.pk), 60), "3/m", str(user.pk), "")
    )
    assert 0 < redis_cache._cache.get_client(key).ttl(key) <= 65  # the window and django-ratelimit's 5 s fudge


def test_a_user_key_counts_each_user_and_answers_429_past_it(user_client, client_for, other_user, still_clock):
    assert [user_client.post("/per-user/").status_code for _ in range(3)] == [200, 200, 429]
    assert client_for(other_user).post("/per-user/").status_code == 200


def test_a_key_only_django_ratelimit_reads_still_limits(user_client, still_clock):
    codes = [user_client.post("/per-header/", HTTP_X_CLIENT="a").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert user_client.post("/per-header/", HTTP_X_CLIENT="b").status_code == 200


def test_a_rate_of_none_does_not_limit(user_client, still_clock):
    assert [user_client.post("/unlimited/").status_code for _ in range(5)] == [200] * 5
