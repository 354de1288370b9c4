"""The floor of an authenticated AI proxy, for bench_ai_serving's non-streamed side by side.

    gunicorn -w 2 -k uvicorn_worker.UvicornWorker --chdir bench floor_llm:app   (FLOOR_PROVIDER, FLOOR_REDIS)

The least such a server can do and still be one: read the body, look the caller's token up in Redis, ask
the provider through the OpenAI SDK (raw response, then its model, as LiteLLM does), answer the JSON. No
framework, no budget, no booking, no log: nothing the hub or LiteLLM could leave out. Its added latency is
what any Python proxy on this machine pays for the server, one Redis read and the SDK, so "the hub at half
LiteLLM's" can be set against what is there to cut.
"""

import os

import orjson
import redis.asyncio as aioredis
from openai import AsyncOpenAI

TOKEN = b"Token floor-bench"
client = AsyncOpenAI(api_key="sk-bench", base_url=os.environ["FLOOR_PROVIDER"], max_retries=0)
redis = aioredis.from_url(os.environ["FLOOR_REDIS"])
KEY = b"floor-bench:token:" + TOKEN


async def _answer(send, status, body, content_type=b"application/json"):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await redis.set(KEY, b"1")
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/healthz":
        return await _answer(send, 200, b"ok", b"text/plain")
    if not await redis.get(b"floor-bench:token:" + dict(scope["headers"]).get(b"authorization", b"")):
        return await _answer(send, 401, b'{"error": "unauthorized"}')
    req = orjson.loads(body)
    raw = await client.chat.completions.with_raw_response.create(model=req["model"], messages=req["messages"])
    await _answer(send, 200, orjson.dumps(raw.parse().model_dump()))
