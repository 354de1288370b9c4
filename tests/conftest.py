"""Shared fixtures and the rule for tests that need real servers.

Tests marked `postgres` or `redis` run against DATABASE_URL / REDIS_URL. Without
them they skip with the reason; with REQUIRE_SERVICES=1 (as .ci/run sets) a
missing server fails the run instead.
"""

import collections
import os

import asgiref.sync
import pytest
from rest_framework.test import APIClient

from integrations import egress
from tests.egress_proxy import RecordingProxy, ServedRouter
from tests.factories import UserFactory

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _postgres_available():
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        return "DATABASE_URL does not point at PostgreSQL"
    return None


def _redis_available():
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return "REDIS_URL is not set"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at REDIS_URL does not answer ({exc})"
    return None


_PROBES = {"postgres": _postgres_available, "redis": _redis_available}
_probe_results = {}


def _unavailable(name):
    if name not in _probe_results:
        _probe_results[name] = _PROBES[name]()
    return _probe_results[name]


def pytest_sessionstart(session):
    if REQUIRE_SERVICES:
        problems = [f"{n}: {why}" for n in _PROBES if (why := _unavailable(n))]
        if problems:
            pytest.exit("REQUIRE_SERVICES=1 but " + "; ".join(problems), returncode=3)


def pytest_runtest_setup(item):
    for name in _PROBES:
        if item.get_closest_marker(name) and (why := _unavailable(name)):
            if REQUIRE_SERVICES:
                pytest.fail(f"needs {name}: {why} (REQUIRE_SERVICES=1)")
            pytest.skip(f"needs {name}: {why}")


@pytest.fixture(autouse=True)
def _clean_shared_state(settings, tmp_path):
    """Every test starts with an empty cache, limiter and breaker (Redis or var/state files)."""
    from django.core.cache import cache

    settings.VAR_DIR = tmp_path
    cache.clear()
    egress.reset()  # the egress rule is read once per process: here, once per test, under its environment
    yield
    from ai import leases

    # A test that started lending without stopping (its rows gone with it): no slices of it lend to the next test.
    leases.forget()


@pytest.fixture
def still_clock():
    """A clock that does not tick: django-ratelimit's fixed one-minute window cannot roll over mid-test."""
    import time

    import time_machine

    with time_machine.travel(time.time(), tick=False) as clock:
        yield clock


@pytest.fixture
def fake_provider(settings, monkeypatch):
    """A registered provider `acme` for gateway tests: configured, limited, priced."""
    from integrations import registry

    monkeypatch.setitem(
        registry.PROVIDERS, "acme", registry.Provider("acme", "Acme", "Acme test provider", ("ACME_API_KEY",))
    )
    settings.ACME_API_KEY = "acme_secret_key_value_123"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "acme": {"requests": {"rate": 1000, "burst": 1000}}}
    settings.PROVIDER_PRICES = {
        **settings.PROVIDER_PRICES,
        "acme": {"send": {"per_call": "0.01", "per_unit": {"segments": "0.005"}}},
    }
    return "acme"


@pytest.fixture
def environ_reads(monkeypatch):
    """`start()` begins recording the names of the environment variables read from then on (into the list it
    returns): for tests that a client reads its settings from the environment once, not per request."""
    reads = []
    real = type(os.environ).__getitem__

    def counting(self, key):
        reads.append(key.decode() if isinstance(key, bytes) else key)
        return real(self, key)

    def start():
        monkeypatch.setattr(type(os.environ), "__getitem__", counting)
        return reads

    return start


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_environment(monkeypatch):
    """No proxy variable from the machine's environment: a test sets the ones it is about."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


class EgressRoute:
    """A recording proxy named by the environment for every target (HTTP_PROXY, HTTPS_PROXY), as on a deployment
    behind one; `exempt`: the local fakes' host, 127.0.0.1, is in NO_PROXY (as 127.0.0.0/8)."""

    def __init__(self, proxy, exempt):
        self.proxy, self.exempt = proxy, exempt

    def check(self, *bases):
        """What went through the proxy: requests to the fakes at `bases` (and nothing else), or nothing at all."""
        if self.exempt:
            assert self.proxy.seen == [], "a request went through the proxy although NO_PROXY exempts its host"
            return
        assert self.proxy.seen, "no request went through the proxy the environment names"
        from urllib.parse import urlsplit

        hosts = {urlsplit(base).netloc for base in bases}
        carried = {urlsplit(t).netloc if "://" in t else t for _, t in self.proxy.seen}
        assert carried <= hosts, f"the proxy carried requests to {carried - hosts}"


@pytest.fixture(params=["proxied", "exempt"])
def egress_route(request, no_proxy_environment):
    """Runs a test twice: through a recording proxy (tests.egress_proxy) the environment names, and with the
    fakes' host in NO_PROXY; the test then asks `egress_route.check(fake base URL)`."""
    proxy = RecordingProxy()
    no_proxy_environment.setenv("HTTP_PROXY", proxy.base)
    no_proxy_environment.setenv("HTTPS_PROXY", proxy.base)
    if request.param == "exempt":
        no_proxy_environment.setenv("NO_PROXY", "localhost,127.0.0.0/8")  # a range, as curl and requests read it
    egress.reset()
    yield EgressRoute(proxy, exempt=request.param == "exempt")
    proxy.stop()


@pytest.fixture
def served():
    """`served(fake, upstream)`: an httpx-level fake (one with `routes(router)`, as respx fixtures use, or a
    request -> response callable) answering on a real socket; requests for its `.base` reach the fake as
    `upstream` + path."""
    import respx

    servers = []

    def serve(fake, upstream):
        handler = fake
        if hasattr(fake, "routes"):
            router = respx.Router(assert_all_called=False)
            fake.routes(router)
            handler = router.handler
        servers.append(ServedRouter(handler, upstream))
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def staff_user(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client authenticated with a real (hashed, expiring) API token for the given user."""
    from integrations.auth.tokens import token_create

    def make(u):
        # Some tests move the clock years ahead (time-machine); the token must outlive them.
        _, key = token_create(user=u, name="test", expires_in_days=100 * 365)
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return c

    return make


@pytest.fixture
def user_client(user, client_for):
    return client_for(user)


@pytest.fixture
def staff_client(staff_user, client_for):
    return client_for(staff_user)


@pytest.fixture
def crossings(monkeypatch):
    """What each request hands to a thread through sync_to_async, by function name."""
    seen = collections.Counter()
    real_init = asgiref.sync.SyncToAsync.__init__

    def counting_init(self, func, *args, **kwargs):
        seen[getattr(func, "__qualname__", repr(func))] += 1
        real_init(self, func, *args, **kwargs)

    monkeypatch.setattr(asgiref.sync.SyncToAsync, "__init__", counting_init)
    return seen


def _command_names(blob):
    """The name of each command in RESP bytes: `*<n>\\r\\n` then n bulk strings `$<len>\\r\\n<bytes>\\r\\n`."""
    names, at = [], 0
    while at < len(blob):
        end = blob.index(b"\r\n", at)
        n, at = int(blob[at + 1 : end]), end + 2
        for i in range(n):
            end = blob.index(b"\r\n", at)
            size, at = int(blob[at + 1 : end]), end + 2
            if i == 0:
                names.append(blob[at : at + size].decode().upper())
            at += size + 2
    return names


@pytest.fixture
def redis_round_trips(monkeypatch):
    """What this process sends Redis, one entry per round trip (a pipeline or a script is one), each the
    list of its commands' names (`[["GET"], ["EVALSHA"], ["SET", "DEL", "XADD", "EXPIRE"]]`)."""
    import redis.connection

    sent = []
    real_send = redis.connection.AbstractConnection.send_packed_command

    def recording_send(self, command, check_health=True):
        blob = b"".join(command) if isinstance(command, (list, tuple)) else bytes(command)
        sent.append(_command_names(blob))
        return real_send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", recording_send)
    return sent


# --- the Celery call-log hand-off (integrations.gateway.handoff) -----------------------------------------


@pytest.fixture
def handoff_keys_empty():
    """The hand-off's Redis lists (queue, in-flight, set aside) empty before and after the test."""
    from integrations.gateway import handoff
    from integrations.redis import get_client

    client = get_client()
    pattern = handoff._keys()["queue"].rsplit(":", 1)[0] + ":*"
    client.delete(*client.keys(pattern) or ["-"])
    yield
    client.delete(*client.keys(pattern) or ["-"])


@pytest.fixture
def drainer(monkeypatch):
    """This process as a worker's: calls hand their rows to a drainer whose batches the test writes (drain_once)."""
    from integrations.gateway import handoff

    d = handoff.Drainer(interval=3600)
    monkeypatch.setattr(handoff, "_enabled", True)
    monkeypatch.setattr(handoff, "_drainer", d)
    return d
