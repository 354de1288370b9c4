"""Where a non-streamed AI completion's WALL time goes inside a hub worker: bench_ai_serving's request, timed.

Not a suite (bench/run.py runs bench_*.py only): a tool for issue 11's "half LiteLLM's added latency". It
runs one hub worker in this process as gunicorn's UvicornWorker runs it (uvicorn, uvloop, httptools, the
ASGI lifespan, DATABASE_POOL on, bench_ai_serving's environment) in front of bench/fake_llm.py, sends N
sequential completions from a client process of its own, and marks the moments a request passes (a mark is
perf_counter(), one clock for every process on Linux, so the client's send and receive line up with the
server's). Per step, the median over the requests of the time from the previous mark: what is CPU of the
step and what is waiting (a thread hop queued, the loop woken) shows as steps of their own.

    DATABASE_URL=... REDIS_URL=... BENCH_PORTS=18300-18399 .venv/bin/python bench/profile_ai_request.py [N]
"""

import asyncio
import functools
import inspect
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ.setdefault("DATABASE_POOL", "true")

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
WARM = 30

marks = []  # (label, perf_counter, on the loop's thread) of the request being served
_loop_thread = None


def mark(label):
    marks.append((label, time.perf_counter(), threading.get_ident() == _loop_thread))


def timed(owner, name, label=None):
    """Mark `label>` and `label<` around owner.name (a function, coroutine function or async generator)."""
    label = label or name
    original = getattr(owner, name)
    if isinstance(original, (staticmethod, classmethod)):
        raise TypeError(name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapper(*args, **kwargs):
            mark(label + ">")
            try:
                return await original(*args, **kwargs)
            finally:
                mark(label + "<")

    else:

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            mark(label + ">")
            try:
                return original(*args, **kwargs)
            finally:
                mark(label + "<")

    setattr(owner, name, wrapper)


def instrument():
    import uvicorn.protocols.http.httptools_impl as proto
    from rest_framework.views import APIView

    import ai.services.completions as completions
    import ai.views as views
    from ai import providers
    from ai.services import booking
    from config import asgi_handler
    from integrations import aio
    from integrations.auth import tokens
    from integrations.gateway import asynchronous, bookings

    original_received = proto.HttpToolsProtocol.data_received

    def data_received(self, data):
        if data.startswith(b"POST"):
            marks.clear()
        mark("bytes in")
        return original_received(self, data)

    proto.HttpToolsProtocol.data_received = data_received

    H = asgi_handler.HubASGIHandler
    timed(H, "__call__", "asgi")
    timed(H, "_read_body_once", "read body")
    timed(H, "create_request", "create_request")
    timed(H, "get_response_async", "get_response_async")
    timed(H, "send_response", "send_response")
    timed(views.AsyncAPIView, "dispatch", "dispatch")
    timed(views.AsyncAPIView, "initialize_request", "initialize_request")
    timed(views.AsyncAPIView, "finalize_response", "finalize_response")
    timed(views.CompletionView, "prepare", "prepare")
    timed(views.CompletionView, "post", "post")
    timed(APIView, "perform_authentication", "auth")
    timed(APIView, "check_permissions", "permissions")
    timed(APIView, "check_throttles", "throttles")
    timed(APIView, "perform_content_negotiation", "negotiation")
    timed(views, "ratelimit_check", "ratelimit")
    from integrations.auth import authentication

    timed(authentication, "token_authenticate", "token_authenticate")
    timed(tokens, "_cache", "token cache get")
    from django.core.cache import CacheHandler

    timed(CacheHandler, "create_connection", "new cache client")
    import redis.client

    from integrations.cache import RedisCacheClient

    timed(RedisCacheClient, "get", "client.get")
    timed(redis.client.Redis, "execute_command", "redis cmd")
    timed(redis.client.Redis, "parse_response", "redis parse")
    from django.conf import settings
    from django.utils.module_loading import import_string

    for path in settings.AI_MIDDLEWARE:
        cls = import_string(path)
        short = cls.__name__.replace("Middleware", "")
        for method in ("process_request", "process_view", "process_response"):
            if method in vars(cls):
                timed(cls, method, f"{short}.{method}")
    from integrations import middleware

    timed(middleware.RequestIdMiddleware, "_acall", "RequestId")
    timed(middleware.access_log, "info", "access log")
    timed(views.CompletionRequestSerializer, "is_valid", "serializer")
    timed(views.services, "begin", "begin")
    timed(booking.Booking, "reserve", "budget hold")
    timed(booking, "start", "start")
    timed(booking, "user_limits", "user_limits")
    timed(booking, "priced_chain", "priced_chain")
    timed(booking, "max_cost", "max_cost")
    timed(booking, "budget_reserve", "budget_reserve")
    from ai import usage

    timed(usage, "at_once", "hold at_once")
    timed(aio, "release_connections", "release_connections")
    timed(completions, "walk_booked", "walk_booked")
    timed(asynchronous, "atake_token", "rate token")
    timed(providers, "complete", "SDK call")
    import httpx2
    import openai._base_client as base

    timed(base.AsyncAPIClient, "_build_request", "sdk build")
    timed(base.AsyncAPIClient, "_prepare_options", "sdk prepare options")
    timed(base.AsyncAPIClient, "_process_response", "sdk process")
    timed(httpx2.AsyncClient, "send", "httpx send")
    import httpcore

    timed(httpcore.AsyncConnectionPool, "handle_async_request", "httpcore")
    timed(bookings.BookingWriter, "put", "writer.put")
    timed(bookings.BookingWriter, "flush", "writer.flush")

    original_hop = aio._hop_on_own_thread

    def hop_thread(fn, args, kwargs):
        mark("hop runs")
        try:
            return original_hop(fn, args, kwargs)
        finally:
            mark("hop ends")

    aio._hop_on_own_thread = hop_thread
    timed(aio, "db_hop", "db_hop")

    from rest_framework.response import Response

    timed(Response, "render", "render")


CLIENT = """
import json, sys, time, httpx
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
out = []
with httpx.Client(base_url=base, headers={"Authorization": "Token " + token}, timeout=30) as c:
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.post("/api/v1/ai/completions/", json=body)
        t1 = time.perf_counter()
        r.raise_for_status()
        out.append((t0, t1))
print(json.dumps(out))
"""


def main():
    from bench import common
    from bench.bench_ai_serving import _hub_env, _ports

    ports = _ports()
    fake_port, hub_port = next(ports), next(ports)
    provider_url = f"http://127.0.0.1:{fake_port}/v1"
    os.environ.update(_hub_env(provider_url))  # before the settings load
    why = common.setup()
    if why:
        sys.exit(why)
    fake = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fake_llm.py"), str(fake_port), "5"])
    _, token = common.api_token("bench-ai-serving")
    from django.db import connections

    connections.close_all()

    import uvicorn

    from config.asgi import application

    instrument()
    server = uvicorn.Server(
        uvicorn.Config(
            application, host="127.0.0.1", port=hub_port, loop="uvloop", http="httptools", log_level="warning"
        )
    )
    per_request = []

    async def drive():
        global _loop_thread
        _loop_thread = threading.get_ident()
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        time.sleep(0.5)
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, f"http://127.0.0.1:{hub_port}", token, str(WARM + N), stdout=subprocess.PIPE
        )
        out, _ = await client.communicate()
        server.should_exit = True
        await serving
        return json.loads(out)

    from config import asgi_handler

    original = asgi_handler.HubASGIHandler.__call__

    async def keep(self, scope, receive, send):
        await original(self, scope, receive, send)
        # Not the lifespan's warm-up requests, which do not come through the socket.
        if scope["type"] == "http" and scope["method"] == "POST" and any(label == "bytes in" for label, *_ in marks):
            per_request.append(list(marks))

    asgi_handler.HubASGIHandler.__call__ = keep
    try:
        client_times = asyncio.run(drive())
    finally:
        fake.terminate()
    report(per_request[WARM:], client_times[WARM:])


def report(requests, client_times):
    steps = {}
    order = []
    totals = []
    overlapped = 0
    for request, (sent, received) in zip(requests, client_times, strict=True):
        previous = ("client sends", sent)
        overlapped += any(label.startswith("writer.flush") for label, _, _ in request)
        for label, at, on_loop in request:
            if label.startswith("writer.flush"):
                continue  # the booking writer's thread, running beside the request: counted apart
            key = f"{previous[0]} -> {label}" + ("" if on_loop else "  [thread]")
            if key not in steps:
                steps[key] = []
                order.append(key)
            steps[key].append((at - previous[1]) * 1000)
            previous = (label, at)
        key = f"{previous[0]} -> client has the answer"
        if key not in steps:
            steps[key] = []
            order.append(key)
        steps[key].append((received - previous[1]) * 1000)
        totals.append((received - sent) * 1000)
    print(f"{len(requests)} requests; client's median round trip {statistics.median(totals):.3f} ms")
    print(f"{'median ms':>10} {'seen':>5}  step")
    summed = 0
    for key in order:
        values = steps[key]
        med = statistics.median(values)
        summed += med * len(values) / len(requests)
        print(f"{med:10.3f} {len(values):5d}  {key}")
    print(f"sum of medians (weighted by how often seen): {summed:.3f} ms")
    print(f"requests with the booking writer's flush running beside them: {overlapped}")


if __name__ == "__main__":
    main()
