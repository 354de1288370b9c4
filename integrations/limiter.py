"""Outbound rate limiter: a token bucket per (provider, bucket, scope).

With Redis, one Lua script refills and takes atomically (Redis's own clock, so
workers on different machines agree). Without Redis, the same arithmetic runs
under a file lock (integrations.localstate) for one machine.

`take` never sleeps. It answers now / later:
- granted: a token was taken, call now;
- reserved: a Celery task may book a future token (the bucket goes negative)
  and run again after `wait` seconds with it prepaid, so a burst of 500 SMS is
  paced at the bucket's rate with one deferral each, not a retry storm;
- denied: no token; retry after `wait`.
A provider's 429 with Retry-After blocks the scope (`block`) for that long.
"""

import dataclasses
import logging
import math
import time
import weakref
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from . import localstate
from .redis import aget_client, get_client, key

logger = logging.getLogger(__name__)

_TAKE_LUA = """
local block_ms = redis.call('PTTL', KEYS[2])
if block_ms > 0 then return {0, block_ms} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function take(bucket, rate, burst, cost)
  rate = tonumber(rate) / 1000.0
  burst = tonumber(burst)
  cost = tonumber(cost)
  local state = redis.call('HMGET', bucket, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil then tokens = burst; ts = now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local granted = 0
  local wait = 0
  if tokens >= cost then
    tokens = tokens - cost
    granted = 1
  else
    wait = math.ceil((cost - tokens) / rate)
    if ARGV[4] == '1' and wait <= tonumber(ARGV[5]) then
      tokens = tokens - cost
      granted = 2
    end
  end
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', bucket, math.ceil((burst - math.min(tokens, 0)) / rate) + 1000)
  return granted, wait
end
local breaker = KEYS[3] and KEYS[3] ~= ''
if KEYS[4] then
  local granted, wait = take(KEYS[4], ARGV[6], ARGV[7], ARGV[8])
  if granted ~= 1 then return {granted, wait, '', 0, 1} end
end
local granted, wait = take(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if breaker then
  local cb = redis.call('HMGET', KEYS[3], 'state', 'failures')
  return {granted, wait, cb[1] or 'closed', tonumber(cb[2] or 0)}
end
return {granted, wait}
"""
# KEYS: the bucket, its scope's block (429 Retry-After), optionally a circuit breaker's state to read ('' for none),
# and optionally a bucket taken first (ARGV[6..8]: its rate, burst, cost). When that first bucket has no token at
# once, the answer is its own ({granted, wait, '', 0, 1}) and the second bucket is left untouched, as if the two
# had been asked one after the other and the caller had stopped after the first.

GRANTED, RESERVED = 1, 2

# A provider's Retry-After: block the scope for ARGV[1] ms unless it is blocked longer already (one step, so two
# workers' 429s at once never leave the shorter block in place of the longer one).
_BLOCK_LUA = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
"""


@dataclass(frozen=True)
class Decision:
    granted: bool
    reserved: bool = False
    wait: float = 0.0  # seconds
    # (state, failures) of the circuit breaker at `breaker_key`, read in the same Redis round trip (the gateway
    # asks, and skips the breaker's own round trip when it is closed); None when not asked or not read.
    breaker: tuple | None = None
    # With `first` (atake): the first bucket had no token at once, and this is its answer; the bucket asked
    # for was not touched.
    first_only: bool = False


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens per second
    burst: float


def limit_for(provider, bucket="requests", scope=None):
    """The configured limit, or None when this provider/bucket is not limited."""
    conf = settings.RATE_LIMITS.get(provider, {})
    scoped = conf.get("scopes", {}).get(scope or "", {}).get(bucket)
    raw = scoped or conf.get(bucket)
    if not raw:
        return None
    return Limit(rate=float(raw["rate"]), burst=float(raw.get("burst", max(1.0, raw["rate"]))))


def _keys(provider, bucket, scope):
    scope = scope or "_"
    return key("rl", provider, bucket, scope), key("rlblock", provider, scope)


_script = None


def _redis_take(client, keys, limit, cost, reserve, max_wait):
    return _decision(
        _sync_script(client)(
            keys=list(keys),
            args=[limit.rate, limit.burst, cost, "1" if reserve else "0", int(max_wait * 1000)],
            client=client,
        )
    )


def _decision(answer):
    """The Decision in _TAKE_LUA's answer: {granted, wait ms[, breaker state, failures[, first only]]}."""
    granted, wait_ms, *read = answer
    first_only = len(read) > 2
    if read and not first_only:
        state = read[0].decode() if isinstance(read[0], bytes) else read[0]
        read = (state, int(read[1]))
    return Decision(
        int(granted) == GRANTED,
        reserved=int(granted) == RESERVED,
        wait=int(wait_ms) / 1000.0,
        breaker=None if first_only else read or None,
        first_only=first_only,
    )


def _local_take(keys, limit, cost, reserve, max_wait):
    blocked = localstate.read(keys[1]).get("until", 0) - time.time()
    if blocked > 0:
        return 0, blocked
    with localstate.locked(keys[0]) as state:
        # Read the clock under the lock: a time taken before waiting for it
        # would be older than the last writer's and refill the bucket twice.
        now = time.time()
        tokens = state.get("tokens", limit.burst)
        ts = state.get("ts", now)
        tokens = min(limit.burst, tokens + max(0.0, now - ts) * limit.rate)
        granted, wait = 0, 0.0
        if tokens >= cost:
            tokens -= cost
            granted = GRANTED
        else:
            wait = math.ceil((cost - tokens) / limit.rate * 1000) / 1000.0
            if reserve and wait <= max_wait:
                tokens -= cost
                granted = RESERVED
        state.update(tokens=tokens, ts=now)
    return granted, wait


def take(provider, scope=None, *, bucket="requests", cost=1, reserve=False, max_wait=None, breaker_key=None):
    """`breaker_key`: also read that circuit breaker's state in the same Redis round trip (Decision.breaker)."""
    limit = limit_for(provider, bucket, scope)
    if limit is None:
        blocked = blocked_for(provider, scope)
        return Decision(False, wait=blocked) if blocked > 0 else Decision(True)
    max_wait = settings.RATE_LIMIT_MAX_RESERVE_SECONDS if max_wait is None else max_wait
    keys = _keys(provider, bucket, scope)
    client = get_client()
    if client is not None:
        return _redis_take(client, (*keys, breaker_key) if breaker_key else keys, limit, cost, reserve, max_wait)
    granted, wait = _local_take(keys, limit, cost, reserve, max_wait)
    return Decision(granted == GRANTED, reserved=granted == RESERVED, wait=wait)


_block_script = None


def block(provider, scope, seconds):
    """Stop calls to this scope for `seconds` (a provider's Retry-After); never shortens a longer block."""
    if not seconds or seconds <= 0:
        return
    _, block_key = _keys(provider, "requests", scope)
    client = get_client()
    ms = int(math.ceil(seconds * 1000))
    if client is not None:
        global _block_script
        if _block_script is None:
            _block_script = client.register_script(_BLOCK_LUA)
        _block_script(keys=[block_key], args=[ms], client=client)
        return
    with localstate.locked(block_key) as state:
        state["until"] = max(state.get("until", 0), time.time() + seconds)


def blocked_for(provider, scope=None):
    _, block_key = _keys(provider, "requests", scope)
    client = get_client()
    if client is not None:
        return max(0, client.pttl(block_key)) / 1000.0
    return max(0.0, localstate.read(block_key).get("until", 0) - time.time())


_SLOT_ACQUIRE_LUA = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""


class concurrency_slot:
    """At most `limit` calls in flight per (provider, scope) across all workers (Graph: 4 per mailbox).

    Without a free slot it raises RateLimited (retry shortly) instead of waiting:
    a task is re-sent, a web request gets 503 with Retry-After. The counter
    expires after `ttl` seconds, so a worker killed mid-call cannot hold a slot
    for ever. Without Redis, slots are counted in a file lock for this machine.
    """

    def __init__(self, provider, scope, limit, *, ttl=120, wait=0.5):
        self.provider, self.scope, self.limit, self.ttl, self.wait = provider, scope, limit, ttl, wait
        self.name = key("slots", provider, scope or "_")

    def __enter__(self):
        from .errors import RateLimited

        if not self.limit:
            return self
        client = get_client()
        if client is not None:
            granted = client.eval(_SLOT_ACQUIRE_LUA, 1, self.name, self.limit, int(self.ttl * 1000))
        else:
            with localstate.locked(self.name) as state:
                now = time.time()
                held = [t for t in state.get("held", []) if t > now]
                granted = len(held) < self.limit
                if granted:
                    held.append(now + self.ttl)
                state["held"] = held
        if not granted:
            raise RateLimited(self.provider, self.scope, self.wait)
        self.acquired = True
        return self

    def __exit__(self, *exc):
        if not getattr(self, "acquired", False):
            return False
        client = get_client()
        if client is not None:
            client.decr(self.name)
        else:
            with localstate.locked(self.name) as state:
                held = sorted(state.get("held", []))
                if held:
                    held.pop(0)
                state["held"] = held
        return False


# --- a take sent ahead of its call, and given back when the call is not made -----------
#
# An AI request takes its first provider's tokens while its budget hold runs in PostgreSQL: the script is sent
# on a connection of the blocking client, the hold's statement goes out, and the script's answer (there by then)
# is read after it. The two waits overlap instead of following each other (ai.services.booking, Booking.reserve).
# A request that then makes no call to that provider (the hold refused it, the deadline passed) gives back what
# the script took, so a refusal does not spend the provider's rate.

_REFUND_LUA = """
for i = 1, #KEYS do
  local tokens = tonumber(redis.call('HGET', KEYS[i], 'tokens'))
  if tokens then
    redis.call('HSET', KEYS[i], 'tokens', tostring(math.min(tonumber(ARGV[2 * i - 1]), tokens + tonumber(ARGV[2 * i]))))
  end
end
"""
# KEYS: the buckets to give back to; ARGV: each one's burst and the cost to give back. A bucket whose key has
# expired is full already. Its timestamp is left alone: the refill from there on is what it would have been.

_refund_script = None


class Taken:
    """Tokens taken ahead of the call they are for: that call's Decision (as `atake` answers it), and what to
    give back (`give_back`) when the call is not made after all. Give back at most once."""

    def __init__(self, decision, refunds):
        self.decision = decision
        self._refunds = refunds  # [(bucket key, burst, cost)] the script took from

    def give_back(self):
        """Return the tokens to their buckets (the blocking client)."""
        global _refund_script
        from redis.exceptions import RedisError

        refunds, self._refunds = self._refunds, []
        client = get_client()
        if not refunds or client is None:
            return
        if _refund_script is None:
            _refund_script = client.register_script(_REFUND_LUA)
        try:
            _refund_script(
                keys=[k for k, _, _ in refunds],
                args=[v for _, burst, cost in refunds for v in (burst, cost)],
                client=client,
            )
        except (RedisError, OSError) as exc:
            # Best effort: the request goes on (or is refused) all the same; the bucket refills as it would.
            logger.warning("rate tokens taken ahead could not be given back: %r", exc)


class SentTake:
    """`atake`'s script sent on the blocking client and not yet read: `answer()` reads it (a Taken, or None
    when Redis could not be asked, the caller then takes as usual) and frees the connection."""

    def __init__(self, client, connection, keys, args, refunds):
        self._client, self._connection = client, connection
        self._keys, self._args, self._refunds = keys, args, refunds

    def answer(self):
        """Never raises for Redis: the caller has just taken a budget hold that an exception would leave held."""
        from redis.exceptions import NoScriptError, RedisError

        client, connection, self._connection = self._client, self._connection, None
        if connection is None:
            raise RuntimeError("a sent take is read once")
        try:
            try:
                raw = connection.read_response()
            except NoScriptError:
                raw = None  # Redis restarted or flushed its scripts: nothing ran; run it the usual way below
            except BaseException:
                connection.disconnect()  # its answer unread: never back in the pool as it is
                raise
            finally:
                client.connection_pool.release(connection)
            if raw is None:
                raw = _sync_script(client)(keys=self._keys, args=self._args, client=client)
        except (RedisError, OSError) as exc:
            logger.warning("rate token taken ahead: no answer from Redis: %r", exc)
            return None
        return Taken(_decision(raw), _took(raw, self._refunds))


def _took(answer, refunds):
    """What _TAKE_LUA's `answer` took, of `refunds` ([(key, burst, cost)]: the request's bucket, then the first
    bucket if any), asked with a breaker key so that its answer's length says which case it is."""
    granted = int(answer[0])
    if len(answer) == 2:
        return []  # the scope is blocked (a 429's Retry-After): nothing was taken
    if len(answer) == 5:
        return refunds[1:] if granted == RESERVED else []  # the first bucket answered alone
    return [*(refunds[:1] if granted in (GRANTED, RESERVED) else []), *refunds[1:]]


def _sync_script(client):
    global _script
    if _script is None:
        _script = client.register_script(_TAKE_LUA)
    return _script


def send_take(provider, scope=None, *, bucket="requests", cost=1, reserve, max_wait, breaker_key, first=None):
    """`atake`'s one round trip (same arguments, `breaker_key` required) sent now and read later: a SentTake,
    or None when it cannot go as one script (no Redis, a bucket not limited) or Redis cannot be reached; the
    call then takes its tokens itself, as before."""
    from redis.exceptions import RedisError

    if not breaker_key:
        raise ValueError("send_take needs a breaker key: its answer's length tells what the script took")
    client = get_client()
    limit = limit_for(provider, bucket, scope)
    first_limit = limit_for(provider, first[0], scope) if first is not None else None
    if client is None or limit is None or (first is not None and first_limit is None):
        return None
    request_key, block_key = _keys(provider, bucket, scope)
    keys = [request_key, block_key, breaker_key]
    args = [limit.rate, limit.burst, cost, "1" if reserve else "0", int(max_wait * 1000)]
    refunds = [(request_key, limit.burst, cost)]
    if first is not None:
        first_key, _ = _keys(provider, first[0], scope)
        keys.append(first_key)
        args.extend([first_limit.rate, first_limit.burst, first[1]])
        refunds.append((first_key, first_limit.burst, first[1]))
    script = _sync_script(client)
    try:
        connection = client.connection_pool.get_connection()
    except (RedisError, OSError) as exc:
        logger.warning("rate token taken ahead: Redis cannot be reached: %r", exc)
        return None
    try:
        connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except (RedisError, OSError) as exc:
        connection.disconnect()
        client.connection_pool.release(connection)
        logger.warning("rate token taken ahead: Redis cannot be reached: %r", exc)
        return None
    except BaseException:
        connection.disconnect()
        client.connection_pool.release(connection)
        raise
    return SentTake(client, connection, keys, args, refunds)


# --- the same bucket from async code (the AI request path) -------------------------
#
# One Lua round trip on the asyncio Redis client; without Redis the file-locked
# fallback runs in a thread, since flock may wait on another process.

_async_scripts = weakref.WeakKeyDictionary()  # client -> registered script
_async_block_scripts = weakref.WeakKeyDictionary()  # client -> registered _BLOCK_LUA


async def _aredis_take(client, keys, limit, cost, reserve, max_wait, first=()):
    script = _async_scripts.get(client)
    if script is None:
        script = _async_scripts[client] = client.register_script(_TAKE_LUA)
    return _decision(
        await script(
            keys=list(keys),
            args=[limit.rate, limit.burst, cost, "1" if reserve else "0", int(max_wait * 1000), *first],
            client=client,
        )
    )


async def atake(
    provider, scope=None, *, bucket="requests", cost=1, reserve=False, max_wait=None, breaker_key=None, first=None
):
    """`take` for async callers: same bucket, same answers.

    `first`: (bucket, cost) of another of the scope's buckets to take from before this one, with the same
    `reserve` and `max_wait`, in the same Redis round trip (an AI completion's tokens per minute, then its
    request). When that one has no token at once, the answer is its own (Decision.first_only) and this bucket
    is not touched: the caller waits for (or is refused) that token and then asks for this one on its own."""
    limit = limit_for(provider, bucket, scope)
    client = aget_client()
    if first is not None:
        first_limit = limit_for(provider, first[0], scope)
        if first_limit is not None and (client is None or limit is None):
            # No one round trip to share (the local fallback, or no limit here): one bucket after the other.
            taken = await atake(provider, scope, bucket=first[0], cost=first[1], reserve=reserve, max_wait=max_wait)
            if not taken.granted:
                return dataclasses.replace(taken, first_only=True)
        if first_limit is None or client is None or limit is None:
            return await atake(
                provider, scope, bucket=bucket, cost=cost, reserve=reserve, max_wait=max_wait, breaker_key=breaker_key
            )
    if client is None:
        return await sync_to_async(take, thread_sensitive=False)(
            provider, scope, bucket=bucket, cost=cost, reserve=reserve, max_wait=max_wait
        )
    if limit is None:
        blocked = await ablocked_for(provider, scope)
        return Decision(False, wait=blocked) if blocked > 0 else Decision(True)
    max_wait = settings.RATE_LIMIT_MAX_RESERVE_SECONDS if max_wait is None else max_wait
    keys = _keys(provider, bucket, scope)
    if first is None:
        return await _aredis_take(client, (*keys, breaker_key) if breaker_key else keys, limit, cost, reserve, max_wait)
    first_key, _ = _keys(provider, first[0], scope)
    return await _aredis_take(
        client,
        (*keys, breaker_key or "", first_key),
        limit,
        cost,
        reserve,
        max_wait,
        (first_limit.rate, first_limit.burst, first[1]),
    )


async def ablock(provider, scope, seconds):
    """`block` for async callers."""
    client = aget_client()
    if client is None:
        return await sync_to_async(block, thread_sensitive=False)(provider, scope, seconds)
    if not seconds or seconds <= 0:
        return
    _, block_key = _keys(provider, "requests", scope)
    script = _async_block_scripts.get(client)
    if script is None:
        script = _async_block_scripts[client] = client.register_script(_BLOCK_LUA)
    await script(keys=[block_key], args=[int(math.ceil(seconds * 1000))], client=client)


async def ablocked_for(provider, scope=None):
    client = aget_client()
    if client is None:
        return await sync_to_async(blocked_for, thread_sensitive=False)(provider, scope)
    _, block_key = _keys(provider, "requests", scope)
    return max(0, await client.pttl(block_key)) / 1000.0
