"""Import at start what the first request would otherwise import.

A fresh worker that imports every provider SDK and view module on its first
request spends seconds of CPU there (tens of seconds on a loaded machine, past
the server's worker timeout). `warm()` runs when config.asgi / config.wsgi is
loaded; with gunicorn's `preload_app` (config/gunicorn.conf.py) that is once,
in the master, before the workers fork, so every worker starts warm and shares
those pages copy-on-write.

Nothing here opens a connection: sockets opened before a fork would be shared
by every worker.
"""

import asyncio
import gc
import importlib
import json
import logging
import threading
import time

from django.apps import apps
from django.urls import get_resolver

logger = logging.getLogger(__name__)

# Modules that the URL conf does not import but a request may: lazily loaded SDK
# parts (the async clients' resources), and per-app modules loaded on demand.
EXTRA_MODULES = (
    "anyio._backends._asyncio",  # httpx's async transport loads its event-loop backend on first use
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "django.contrib.messages.storage.fallback",
    "django.contrib.sessions.serializers",
    "googleapiclient.discovery",
    "msal",
    "redis.asyncio",
    "rest_framework.authentication",
    "rest_framework.parsers",
    "rest_framework.renderers",
    "rest_framework.negotiation",
    "rest_framework.metadata",
)
APP_MODULES = ("providers", "services", "tasks", "webhooks", "serializers", "selectors")


def warm():
    started = time.perf_counter()
    get_resolver().url_patterns  # noqa: B018 - resolving the URL conf imports every view, and so every SDK
    names = list(EXTRA_MODULES)
    for config in apps.get_app_configs():
        if config.name.startswith("django."):
            continue
        names += [f"{config.name}.{module}" for module in APP_MODULES]
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but imports something missing: a real error
                raise
    _sdk_resources()
    _ai_request_path()
    _model_metadata()
    # Everything imported so far lives as long as the process: move it out of the
    # collector's reach. Otherwise the first full collection, due soon after
    # start, scans it all during some early request (~100 ms); with preload it
    # also keeps workers from touching, and so copying, the master's pages.
    gc.collect()
    gc.freeze()
    logger.info("warm: modules imported in %.2f s", time.perf_counter() - started)


# What the dry runs' requests are answered with: the smallest answer each SDK parses.
OPENAI_ANSWER = {
    "id": "warm",
    "object": "chat.completion",
    "created": 0,
    "model": "warm",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
}
ANTHROPIC_ANSWER = {
    "id": "warm",
    "type": "message",
    "role": "assistant",
    "model": "warm",
    "content": [{"type": "text", "text": ""}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 0, "output_tokens": 0},
}


def _answer_for(path):
    return ANTHROPIC_ANSWER if path.endswith("/messages") else OPENAI_ANSWER


async def _dry_run(http, base_url):
    """One completion through each AI SDK over `http` (an httpx2.AsyncClient), answered by whatever
    listens at `base_url`: the SDK builds and sends its request and parses the answer."""
    import anthropic
    import openai

    messages = [{"role": "user", "content": "warm"}]
    client = openai.AsyncOpenAI(api_key="warm-up", base_url=f"{base_url}/v1", http_client=http, max_retries=0)
    await client.chat.completions.create(model="warm", messages=messages, max_completion_tokens=1)
    client = anthropic.AsyncAnthropic(api_key="warm-up", base_url=base_url, http_client=http, max_retries=0)
    await client.messages.create(model="warm", messages=messages, max_tokens=1)


def _sdk_resources():
    """What the AI SDKs load on first use: each API resource (~1 s of pydantic models), the
    request transformers' type hints, the response models' validators, anyio's asyncio
    backend and the shared TLS context. A dry run of each SDK against an in-process
    transport walks all of it; nothing leaves the process."""
    import httpx2
    import openai

    from ai.providers import tls_context

    tls_context()
    openai.DefaultAsyncHttpxClient(verify=tls_context())  # imports the real transport (httpcore2, h11)

    def answer(request):
        return httpx2.Response(200, json=_answer_for(request.url.path))

    async def dry_run():
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
            await _dry_run(http, "http://warm.invalid")
        # Stream parsing is lazy too: its event models are built on first use.
        from anthropic.types import RawMessageStreamEvent  # noqa: F401
        from openai.types.chat import ChatCompletionChunk

        ChatCompletionChunk.model_rebuild()

    # In a thread of its own: this may be imported from a running event loop (tests do).
    runner = threading.Thread(target=asyncio.run, args=(dry_run(),), name="warm-up")
    runner.start()
    runner.join()


def _ai_request_path():
    """Run the pure parts of a completion once (validation, routing, pricing, rendering): the
    interpreter specialises code on its first runs, and the first client should not pay for it."""
    from rest_framework.renderers import JSONRenderer

    from ai import services
    from ai.routing import chain_for
    from ai.serializers import CompletionRequestSerializer
    from ai.usage import price

    serializer = CompletionRequestSerializer(data={"messages": [{"role": "user", "content": "warm"}], "temperature": 0})
    if not serializer.is_valid():
        return
    params = serializer.validated_data
    for provider, model in chain_for():
        price(provider, model, input_tokens=10, output_tokens=10, cached_tokens=0)
    services.cache_key(owner_id=0, params=params)
    payload = {"content": "warm", "usage": {"input_tokens": 1}, "fallbacks": []}
    JSONRenderer().render(payload)
    services.sse("done", payload)


def _model_metadata():
    """Django builds each model's field maps on first use (every query needs them)."""
    for model in apps.get_models():
        meta = model._meta
        meta.get_fields()
        meta.concrete_fields  # noqa: B018
        meta.local_concrete_fields  # noqa: B018
        meta.db_returning_fields  # noqa: B018
        meta.fields_map  # noqa: B018
        meta._forward_fields_map  # noqa: B018
        meta._property_names  # noqa: B018


def warm_worker():
    """After the fork, in each worker: open its database pool, the shared cache's Redis connection
    (integrations.cache: one pool per process) and the limiter's blocking one (an AI request's hold hop sends
    its rate tokens on it, Booking.reserve), so the first request waits for none of them. The first
    authenticated request spent ~3 ms of its ~8 connecting to Redis for its token lookup."""
    from django.core.cache import cache
    from django.db import connections

    from integrations.redis import get_client

    for conn in connections.all():
        if conn.settings_dict.get("OPTIONS", {}).get("pool"):
            conn.ensure_connection()
            conn.close()  # back to the pool, which keeps it (and min_size others) open
    # Last: with Redis down this raises (warm_loop logs it and the worker serves), the pool is open by then.
    cache.get("warm-up")  # a miss; what matters is the connection it leaves in the pool
    client = get_client()
    if client is not None:
        client.ping()


async def warm_loop(app):
    """At ASGI lifespan startup, on the worker's own event loop: the database pool, the
    asyncio Redis connection, and passes through the middleware, DRF and the async
    view (anonymous, and with an unknown token through the AI fast path; answered 401),
    then what an answer runs past them: the SDK dry run over the real transport
    (_sdk_on_this_loop), db_hop's threads (_hop_threads) and the request's pure parts, so
    the first client is not the one who pays for them. A failure here is logged, never
    fatal: the worker still serves. Either way the worker then collects garbage less often
    (collect_less).

    Paid after the fork because a worker's first request paid it there even with everything
    warmed in the master: it wrote to ~1,500 of the master's pages (reference counts), each
    copied on that write, and ran code the interpreter had not specialised yet. Per-phase
    timer in fresh servers (tests/serving/test_warm_start.py's setup, medians of ten): the
    first completion's own CPU (its steps on the loop and its thread hop) 11.7 ms against
    4.3 for later ones, ~1,480 page faults against ~10; with these steps 7.6 against 4.6,
    ~290 faults."""
    from django.conf import settings

    from integrations.aio import db_hop
    from integrations.redis import aget_client

    started = time.perf_counter()
    try:
        await db_hop(warm_worker)
        client = aget_client()
        if client is not None:
            await client.ping()
        _ai_clients()
        host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*"), "localhost")
        # The anonymous completion is answered 401 on purpose; it is not a client's failure, so
        # Django's request logger must not warn about it at every start.
        request_log = logging.getLogger("django.request")
        previous = request_log.level
        request_log.setLevel(logging.ERROR)
        try:
            # The completion twice: anonymous (the full chain), and with a token no one holds (the AI fast path,
            # ai.fastpath, and DRF's token authentication): both answered 401. Without the second, a worker's
            # first API client paid 20-45 ms for the fast path's first pass (tests/serving/test_warm_start.py).
            for method, path, headers in (
                ("GET", "/healthz", []),
                ("POST", "/api/v1/ai/completions/", []),
                ("POST", "/api/v1/ai/completions/", [(b"authorization", b"Token warm-up-not-a-token")]),
            ):
                await _self_request(app, method, path, host, headers)
        finally:
            request_log.setLevel(previous)
        # What an answered completion runs past those 401s, as far as it can run without a provider or a user.
        await _sdk_on_this_loop()
        await _hop_threads()
        _ai_request_path()
    except Exception:  # noqa: BLE001 - warming is an optimisation; the worker must start regardless
        logger.warning("warm: event-loop warm-up failed", exc_info=True)
        return
    finally:
        collect_less()
    gc.collect()
    gc.freeze()  # the worker's own long-lived objects (pools, clients), as warm() does for the master's
    logger.info("warm: event loop ready in %.3f s", time.perf_counter() - started)


# The collector's first threshold in a serving worker (Python's default is 700). A request allocates thousands of
# containers that live until its answer is sent (a 100-offer flight search ~1,100 at once), so at 700 nearly
# every request set off a young collection, and every tenth an older one: ~0.5 ms of a fresh search's wall time,
# against <0.1 ms at 10,000. What is long-lived is frozen (warm, warm_loop), so a collection scans only what
# requests left behind, and cyclic garbage still goes within a few requests.
YOUNG_COLLECTION_THRESHOLD = 10_000


def collect_less():
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


# How often the worker's dry run goes through each SDK: the interpreter specialises a function's code only
# after its first calls (eight, in Python 3.11). Ten passes left the first answer's SDK call ~0.3 ms of CPU
# less than one pass did (three fresh workers each); they take ~50 ms of the worker's start.
WORKER_DRY_RUNS = 10


async def _sdk_on_this_loop(passes=WORKER_DRY_RUNS):
    """The SDK dry run again, in this worker, on its event loop and over the SDKs' real transport: a
    client as the hub's own SDK clients get (providers._sdk_client), sending to a listener of this
    worker's own on a loopback port (_answer_http), so nothing leaves the process.

    The master's dry run (_sdk_resources) leaves the SDKs' caches built, but a forked worker still
    copies every page its first request writes to (reference counts), and that request also opened the
    first connection through httpcore2, h11 and anyio on this loop and started the loop's default
    executor thread (each SDK client looks its platform up there once). Without this pass the first
    completion's SDK call took 6.6 ms of CPU against 2.0 for later ones (800 page faults, 400 of them
    in the transport's first connection; per-phase timer in ten fresh workers); with it 3.3 (~20)."""
    import openai

    from ai.providers import tls_context

    answering = []

    async def answer(reader, writer):
        answering.append(asyncio.current_task())
        await _answer_http(reader, writer)

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    host, port = listener.sockets[0].getsockname()[:2]
    try:
        async with openai.DefaultAsyncHttpxClient(verify=tls_context(), trust_env=False) as http:
            for _ in range(passes):
                await _dry_run(http, f"http://{host}:{port}")
    finally:
        listener.close()
        # The client has closed its connection: its answerer ends on that, not cancelled with a loop that ends.
        await asyncio.gather(*answering, return_exceptions=True)
        await listener.wait_closed()


async def _answer_http(reader, writer):
    """The loopback listener of _sdk_on_this_loop: each HTTP/1.1 request on a connection is answered with
    the smallest answer its SDK parses (_answer_for its path), until the client closes the connection."""
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *fields = head.split("\r\n")
            length = next(
                (int(v) for k, _, v in (f.partition(":") for f in fields) if k.lower() == "content-length"), 0
            )
            await reader.readexactly(length)
            body = json.dumps(_answer_for(request_line.split(" ")[1])).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
            writer.write(body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed its connection
    finally:
        writer.close()


async def _hop_threads():
    """Each of db_hop's threads (a thread pool starts them on first use) with what a request's hop
    finds there: its own cache backend and database wrapper (Django keeps both per thread), and a
    pooled connection on which PostgreSQL has already read the budget hold's table (a fresh server
    process loads a table's catalog entries on its first statement there: ~0.5 ms of the hold).
    All at once, so each runs on a thread and a connection of its own."""
    from django.conf import settings

    from integrations.aio import db_hop

    together = threading.Barrier(settings.DB_HOP_THREADS or 1, timeout=10)  # 0: Django's one shared thread
    await asyncio.gather(*(db_hop(_hop_thread_ready, together) for _ in range(together.parties)))


def _hop_thread_ready(together):
    from django.core.cache import cache

    from ai.models import AiSpend
    from ai.usage import month_of

    try:
        cache.get("warm-up")
        AiSpend.objects.filter(owner_id=0, month=month_of()).exists()  # a read that finds nothing
    finally:
        together.wait()  # this thread keeps its connection until every other hop holds one of its own


def _ai_clients():
    """This loop's SDK client for every configured AI provider (building one costs ~10 ms)."""
    from ai import providers
    from integrations.registry import get_provider

    for name in providers.PROVIDERS:
        if not get_provider(name).missing():
            providers._sdk_client(name)


async def _self_request(app, method, path, host, headers=()):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",  # no SSL redirect in production settings
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", host.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            *headers,
        ],
        "client": ("127.0.0.1", 0),
        "server": (host, 443),
    }
    body = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive():
        if body:
            return body.pop()
        await asyncio.Event().wait()  # never a disconnect: the answer is short

    async def send(message):
        pass

    await app(scope, receive, send)
