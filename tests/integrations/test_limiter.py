"""The outbound token bucket: exact under contention, on Redis and on the one-machine fallback."""

import asyncio
import threading
import time
import uuid

import pytest
from asgiref.sync import async_to_sync

from integrations import limiter


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request, settings):
    if request.param == "local":
        settings.REDIS_URL = ""
    else:
        import os

        settings.REDIS_URL = os.environ["REDIS_URL"]
    # "acme" is fast, for the contention test; "slow" refills one token a second,
    # so the exact tests below do not depend on how loaded the machine is.
    settings.RATE_LIMITS = {
        "acme": {"requests": {"rate": 50, "burst": 10}},
        "slow": {"requests": {"rate": 1, "burst": 10}},
    }
    return request.param


def _hammer(threads, seconds):
    taken = []
    stop = time.monotonic() + seconds

    def worker():
        count = 0
        while time.monotonic() < stop:
            if limiter.take("acme", "s1").granted:
                count += 1
        taken.append(count)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(taken), time.monotonic() - started


def test_eight_threads_never_take_more_than_rate_times_time_plus_burst(backend):
    taken, elapsed = _hammer(threads=8, seconds=3)
    assert taken <= 50 * elapsed + 10
    # and the bucket is not starved either: at least 80 % of what was allowed, even on a loaded machine
    assert taken >= 0.8 * 50 * 3


def test_a_fresh_bucket_gives_its_burst_at_once_then_reports_the_wait(backend):
    grants = [limiter.take("slow", "s2").granted for _ in range(10)]
    assert all(grants)
    denied = limiter.take("slow", "s2")
    assert not denied.granted and 0.5 < denied.wait <= 1.0


def test_scopes_have_their_own_buckets(backend):
    for _ in range(10):
        limiter.take("slow", "a")
    assert not limiter.take("slow", "a").granted
    assert limiter.take("slow", "b").granted


def test_a_reservation_books_the_next_slots_in_order(backend):
    for _ in range(10):
        limiter.take("slow", "r")
    waits = [limiter.take("slow", "r", reserve=True) for _ in range(3)]
    assert all(d.reserved and not d.granted for d in waits)
    assert waits[0].wait < waits[1].wait < waits[2].wait
    # the third booking waits for three tokens at 1/s, less whatever refilled meanwhile
    assert 2.5 < waits[2].wait <= 3.001


def test_a_reservation_too_far_ahead_is_denied_instead(backend):
    for _ in range(10):
        limiter.take("slow", "far")
    decision = limiter.take("slow", "far", reserve=True, max_wait=0.5)
    assert not decision.reserved and not decision.granted


def test_a_block_stops_the_scope_and_is_never_shortened(backend):
    limiter.block("acme", "b1", 5)
    limiter.block("acme", "b1", 1)
    decision = limiter.take("acme", "b1")
    assert not decision.granted and decision.wait > 4


def test_two_429s_at_once_never_leave_the_shorter_block_in_place_of_the_longer(backend):
    # Two workers get a provider's 429 at the same moment, one with Retry-After 60 s, one with 1 s.
    shortened, run = [], uuid.uuid4().hex[:8]  # blocks outlive the test: scopes of this run only
    for trial in range(100):
        scope = f"race{trial}-{run}"
        start = threading.Barrier(2)

        def worker(seconds, scope=scope, start=start):
            start.wait(timeout=10)
            limiter.block("acme", scope, seconds)

        pool = [threading.Thread(target=worker, args=(seconds,)) for seconds in (60, 1)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if limiter.blocked_for("acme", scope) < 50:
            shortened.append(trial)
    assert shortened == []


def test_two_429s_at_once_on_the_async_path_keep_the_longer_block(backend):
    scope = f"arace-{uuid.uuid4().hex[:8]}"

    async def both():
        await asyncio.gather(limiter.ablock("acme", scope, 60), limiter.ablock("acme", scope, 1))
        return await limiter.ablocked_for("acme", scope)

    assert async_to_sync(both)() > 50


def test_scope_overrides_give_a_short_code_its_own_rate(settings, backend):
    settings.RATE_LIMITS = {
        "twilio": {"requests": {"rate": 1, "burst": 1}, "scopes": {"12345": {"requests": {"rate": 100, "burst": 100}}}}
    }
    assert limiter.limit_for("twilio", scope="+15550001").rate == 1
    assert limiter.limit_for("twilio", scope="12345").rate == 100


def test_an_unlimited_provider_always_grants(backend):
    assert limiter.take("nobody").granted


def test_a_first_bucket_and_the_request_bucket_are_taken_in_one_step(settings, backend):
    """An AI attempt's tokens per minute, then its request: both taken when both have a token."""
    settings.RATE_LIMITS = {"slow": {"requests": {"rate": 1, "burst": 10}, "tokens": {"rate": 1, "burst": 10}}}
    scope = f"pair-{uuid.uuid4().hex[:8]}"
    decision = async_to_sync(limiter.atake)("slow", scope, first=("tokens", 6))
    assert decision.granted and not decision.first_only
    assert not limiter.take("slow", scope, bucket="tokens", cost=5).granted  # 4 left of 10
    assert [limiter.take("slow", scope).granted for _ in range(10)] == [True] * 9 + [False]  # 1 of 10 taken


def test_without_a_first_token_at_once_its_answer_comes_back_and_the_request_bucket_is_untouched(settings, backend):
    settings.RATE_LIMITS = {"slow": {"requests": {"rate": 1, "burst": 2}, "tokens": {"rate": 1, "burst": 10}}}
    scope = f"pair-{uuid.uuid4().hex[:8]}"
    take = async_to_sync(limiter.atake)
    refused = take("slow", scope, first=("tokens", 12))
    assert refused.first_only and not refused.granted and not refused.reserved and 1.5 < refused.wait <= 2.001
    booked = take("slow", scope, first=("tokens", 11), reserve=True, max_wait=5)
    assert booked.first_only and booked.reserved and 0.5 < booked.wait <= 1.001
    # The request bucket was not asked either time: its burst of 2 is all there.
    assert [limiter.take("slow", scope).granted for _ in range(3)] == [True, True, False]


def test_a_blocked_scope_refuses_both_buckets(settings, backend):
    settings.RATE_LIMITS = {"slow": {"requests": {"rate": 1, "burst": 10}, "tokens": {"rate": 1, "burst": 10}}}
    scope = f"pair-{uuid.uuid4().hex[:8]}"
    limiter.block("slow", scope, 5)
    decision = async_to_sync(limiter.atake)("slow", scope, first=("tokens", 1))
    assert not decision.granted and decision.wait > 4


# --- a take sent ahead of its call (an AI request's first provider, beside its budget hold) --------------------

FROZEN = {"requests": {"rate": 0.01, "burst": 2}, "tokens": {"rate": 0.01, "burst": 10}}  # no refill mid-test


def _left(scope, bucket="requests"):
    """How many tokens of 1 the bucket gives now (taking them)."""
    return sum(limiter.take("frozen", scope, bucket=bucket).granted for _ in range(20))


def _ahead(scope, *, first=4, reserve=False):
    sent = limiter.send_take(
        "frozen", scope, reserve=reserve, max_wait=1000, breaker_key=f"cb-{scope}", first=("tokens", first)
    )
    return sent.answer()


def test_without_redis_no_take_is_sent_ahead(settings):
    """The one-machine fallback has no round trip to overlap: the call takes its tokens itself, as before."""
    settings.REDIS_URL = ""
    settings.RATE_LIMITS = {"frozen": FROZEN}
    assert limiter.send_take("frozen", reserve=False, max_wait=0, breaker_key="cb", first=("tokens", 1)) is None


@pytest.mark.redis
def test_a_take_sent_ahead_answers_as_atake_and_takes_from_both_buckets_once(settings):
    settings.RATE_LIMITS = {"frozen": FROZEN}
    scope = f"ahead-{uuid.uuid4().hex[:8]}"
    taken = _ahead(scope)
    assert taken.decision.granted and taken.decision.breaker == ("closed", 0)
    assert (_left(scope), _left(scope, "tokens")) == (1, 6)


@pytest.mark.redis
@pytest.mark.parametrize(
    "case",
    ["both granted", "first reserved alone", "first refused", "request reserved", "request refused", "blocked"],
)
def test_giving_back_returns_exactly_what_the_take_took(settings, case):
    settings.RATE_LIMITS = {"frozen": FROZEN}
    scope = f"back-{case.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    # Buckets part spent before, so that giving back too much would show: requests 1 of 2, tokens 5 of 10.
    assert limiter.take("frozen", scope).granted and limiter.take("frozen", scope, bucket="tokens", cost=5).granted
    expected = (1, 5)
    if case == "both granted":
        taken = _ahead(scope)
        assert taken.decision.granted
    elif case == "first reserved alone":
        taken = _ahead(scope, first=7, reserve=True)
        assert taken.decision.first_only and taken.decision.reserved
    elif case == "first refused":
        taken = _ahead(scope, first=7)
        assert taken.decision.first_only and not taken.decision.granted
    elif case == "request reserved":
        assert limiter.take("frozen", scope).granted  # the request bucket is empty now
        taken = _ahead(scope, reserve=True)
        assert taken.decision.reserved and not taken.decision.first_only
        expected = (0, 5)
    elif case == "request refused":
        assert limiter.take("frozen", scope).granted
        taken = _ahead(scope)
        assert not taken.decision.granted and not taken.decision.reserved and not taken.decision.first_only
        expected = (0, 5)
    else:
        limiter.block("frozen", scope, 0.2)
        taken = _ahead(scope)
        assert not taken.decision.granted and not taken.decision.first_only
        time.sleep(0.25)  # the block is over: the buckets can be counted
    taken.give_back()
    taken.give_back()  # at most once
    if case == "request reserved":
        # The booked future token is freed: the next booking waits for one token's refill (100 s), not two.
        assert 99 < limiter.take("frozen", scope, reserve=True, max_wait=1000).wait <= 100
        expected = (0, 5)
    assert (_left(scope), _left(scope, "tokens")) == expected


@pytest.mark.redis
def test_a_take_sent_ahead_after_redis_forgot_its_scripts_still_takes_once(settings):
    from integrations.redis import get_client

    settings.RATE_LIMITS = {"frozen": FROZEN}
    scope = f"noscript-{uuid.uuid4().hex[:8]}"
    get_client().script_flush()
    taken = _ahead(scope)
    assert taken.decision.granted
    assert (_left(scope), _left(scope, "tokens")) == (1, 6)


@pytest.mark.redis
@pytest.mark.parametrize("fails", ["reading the answer", "running the script again after NOSCRIPT"])
def test_a_take_sent_ahead_that_redis_cannot_answer_is_no_error(settings, monkeypatch, fails):
    """The caller reads the answer just after taking a budget hold: an exception there would leave it held.
    No answer is None, and the attempt takes its own tokens as before."""
    import redis
    import redis.commands.core
    import redis.connection

    from integrations.redis import get_client

    def broken(*args, **kwargs):
        raise redis.ConnectionError("Connection reset by peer")

    settings.RATE_LIMITS = {"frozen": FROZEN}
    scope = f"broken-{uuid.uuid4().hex[:8]}"
    if fails == "reading the answer":
        sent = limiter.send_take("frozen", scope, reserve=False, max_wait=0, breaker_key=f"cb-{scope}")
        monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", broken)
        assert sent.answer() is None
        monkeypatch.undo()
        # The connection whose answer was never read is not handed to the next command.
        assert get_client().set(f"after-{scope}", "1") and get_client().get(f"after-{scope}") == b"1"
        return
    else:
        get_client().script_flush()
        sent = limiter.send_take("frozen", scope, reserve=False, max_wait=0, breaker_key=f"cb-{scope}")
        monkeypatch.setattr(redis.commands.core.Script, "__call__", broken)
    assert sent.answer() is None
