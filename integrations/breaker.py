"""Circuit breaker per provider (or per destination of one, `<provider>:<destination>`), its state shared by
every process.

closed -> open after `failure_threshold` consecutive failures (timeouts,
connection errors, 5xx); open fails fast for `cooldown_seconds`; then the
first caller becomes the single probe (half_open) while others still fail
fast; the probe's success closes the circuit, its failure opens it again.
A provider that answers at all (2xx or 4xx) counts as healthy; a 429 counts
as neither, since a busy provider is not a broken one.

With Redis the transitions are Lua scripts (atomic across machines); without
it the same logic runs under a file lock for one machine.
"""

import time
import weakref
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from . import localstate, metrics
from .redis import aget_client, get_client, key

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_GAUGE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

_BEFORE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probe_until', 'failures')
local state = s[1] or 'closed'
if state == 'closed' then return {1, 0, state, tonumber(s[4] or 0)} end
if state == 'open' then
  local remaining = tonumber(s[2]) + tonumber(ARGV[1]) - now
  if remaining > 0 then return {0, remaining, state, 0} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[2]))
  return {1, 0, 'half_open', 0}
end
local probe_until = tonumber(s[3] or 0)
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
  return {1, 0, 'half_open', 0}
end
return {0, probe_until - now, 'half_open', 0}
"""

_AFTER_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == 'ok' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  return 'closed'
end
if state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  return 'open'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'closed' and failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  return 'open'
end
return state
"""


@dataclass(frozen=True)
class Permit:
    allowed: bool
    state: str
    wait: float = 0.0
    failures: int = 0


def _conf(name):
    # A destination's circuit ("alert_webhook:channel:3", see gateway.attempt's `circuit`) has its provider's.
    conf = dict(settings.CIRCUIT_BREAKER)
    overrides = settings.CIRCUIT_BREAKER_OVERRIDES
    conf.update(overrides.get(name) or overrides.get(name.split(":", 1)[0], {}))
    return conf


def _key(provider):
    return key("cb", provider)


_scripts = {}


def _script(client, name, source):
    if name not in _scripts:
        _scripts[name] = client.register_script(source)
    return _scripts[name]


def state_key(provider):
    """The Redis hash of `provider`'s breaker: the limiter reads it in the gateway's token round trip."""
    return _key(provider)


def closed_permit(read):
    """before_call's Permit from a (state, failures) read done elsewhere (limiter.Decision.breaker), or None.

    Only for a closed circuit: before_call only reads then, so a read in the same round trip as the rate token
    answers as it would, one Redis round trip fewer per provider call. Open or half-open (a cooldown to check,
    a probe to claim) is for before_call itself."""
    if read is None or read[0] != CLOSED:
        return None
    return Permit(True, CLOSED, failures=read[1])


def before_call(provider):
    conf = _conf(provider)
    cooldown_ms = int(conf["cooldown_seconds"] * 1000)
    probe_ms = int(conf["probe_timeout_seconds"] * 1000)
    client = get_client()
    if client is not None:
        allowed, wait_ms, state, failures = _script(client, "before", _BEFORE_LUA)(
            keys=[_key(provider)], args=[cooldown_ms, probe_ms], client=client
        )
        state = state.decode() if isinstance(state, bytes) else state
        return Permit(bool(allowed), state, int(wait_ms) / 1000.0, int(failures))
    now = time.time() * 1000
    with localstate.locked(_key(provider)) as s:
        state = s.get("state", CLOSED)
        if state == CLOSED:
            return Permit(True, CLOSED, failures=s.get("failures", 0))
        if state == OPEN:
            remaining = s["opened_at"] + cooldown_ms - now
            if remaining > 0:
                return Permit(False, OPEN, remaining / 1000.0)
            s.update(state=HALF_OPEN, probe_until=now + probe_ms)
            return Permit(True, HALF_OPEN)
        if now >= s.get("probe_until", 0):
            s["probe_until"] = now + probe_ms
            return Permit(True, HALF_OPEN)
        return Permit(False, HALF_OPEN, (s["probe_until"] - now) / 1000.0)


def after_call(provider, *, healthy):
    """Report how the call went: healthy=True (answered), False (failed); returns the new state."""
    threshold = _conf(provider)["failure_threshold"]
    client = get_client()
    if client is not None:
        state = _script(client, "after", _AFTER_LUA)(
            keys=[_key(provider)], args=["ok" if healthy else "fail", threshold], client=client
        )
        state = state.decode() if isinstance(state, bytes) else state
    else:
        with localstate.locked(_key(provider)) as s:
            current = s.get("state", CLOSED)
            if healthy:
                s.update(state=CLOSED, failures=0)
            elif current == HALF_OPEN:
                s.update(state=OPEN, opened_at=time.time() * 1000)
            else:
                s["failures"] = s.get("failures", 0) + 1
                if current == CLOSED and s["failures"] >= threshold:
                    s.update(state=OPEN, opened_at=time.time() * 1000)
            state = s.get("state", CLOSED)
    metrics.breaker_state.labels(provider).set(_GAUGE[state])
    return state


def state(provider):
    """closed / open / half_open as a reader would see it now (open past its cooldown reads half_open)."""
    client = get_client()
    if client is not None:
        raw = client.hmget(_key(provider), "state", "opened_at")
        current = (raw[0] or b"closed").decode()
        opened_at = float(raw[1] or 0)
        now = time.time() * 1000  # only for display; transitions use Redis's clock
    else:
        s = localstate.read(_key(provider))
        current, opened_at, now = s.get("state", CLOSED), s.get("opened_at", 0), time.time() * 1000
    if current == OPEN and now >= opened_at + _conf(provider)["cooldown_seconds"] * 1000:
        return HALF_OPEN
    return current


def states(providers):
    """{provider: state} for many providers in one Redis round trip (the console's overview)."""
    client = get_client()
    if client is None:
        return {p: state(p) for p in providers}
    pipe = client.pipeline(transaction=False)
    for provider in providers:
        pipe.hmget(_key(provider), "state", "opened_at")
    now = time.time() * 1000  # only for display; transitions use Redis's clock
    out = {}
    for provider, raw in zip(providers, pipe.execute(), strict=True):
        current = (raw[0] or b"closed").decode()
        if current == OPEN and now >= float(raw[1] or 0) + _conf(provider)["cooldown_seconds"] * 1000:
            current = HALF_OPEN
        out[provider] = current
    return out


def reset(provider):
    """Close the circuit by hand (admin action)."""
    client = get_client()
    if client is not None:
        client.delete(_key(provider))
    else:
        with localstate.locked(_key(provider)) as s:
            s.clear()
    metrics.breaker_state.labels(provider).set(0)


def trip(provider):
    """Open the circuit by hand (console): calls fail fast until the cooldown lets a probe through."""
    client = get_client()
    if client is not None:
        seconds, micros = client.time()  # Redis's clock, as the Lua transitions use
        client.hset(
            _key(provider), mapping={"state": OPEN, "opened_at": seconds * 1000 + micros // 1000, "failures": 0}
        )
    else:
        with localstate.locked(_key(provider)) as s:
            s.update(state=OPEN, opened_at=time.time() * 1000, failures=0)
    metrics.breaker_state.labels(provider).set(_GAUGE[OPEN])


# --- the same breaker from async code (the AI request path) -------------------------

_async_scripts = weakref.WeakKeyDictionary()  # client -> {name: registered script}


def _ascript(client, name, source):
    scripts = _async_scripts.setdefault(client, {})
    if name not in scripts:
        scripts[name] = client.register_script(source)
    return scripts[name]


async def abefore_call(provider):
    """`before_call` for async callers (asyncio Redis; the file-locked fallback in a thread)."""
    client = aget_client()
    if client is None:
        return await sync_to_async(before_call, thread_sensitive=False)(provider)
    conf = _conf(provider)
    allowed, wait_ms, state, failures = await _ascript(client, "before", _BEFORE_LUA)(
        keys=[_key(provider)],
        args=[int(conf["cooldown_seconds"] * 1000), int(conf["probe_timeout_seconds"] * 1000)],
        client=client,
    )
    state = state.decode() if isinstance(state, bytes) else state
    return Permit(bool(allowed), state, int(wait_ms) / 1000.0, int(failures))


async def aafter_call(provider, *, healthy):
    """`after_call` for async callers."""
    client = aget_client()
    if client is None:
        return await sync_to_async(after_call, thread_sensitive=False)(provider, healthy=healthy)
    state = await _ascript(client, "after", _AFTER_LUA)(
        keys=[_key(provider)],
        args=["ok" if healthy else "fail", _conf(provider)["failure_threshold"]],
        client=client,
    )
    state = state.decode() if isinstance(state, bytes) else state
    metrics.breaker_state.labels(provider).set(_GAUGE[state])
    return state
