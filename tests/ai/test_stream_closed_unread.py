"""A client gone before the server starts reading the stream leaves no upstream or hold open."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync

from ai.models import AiSpend
from integrations import aio
from tests.ai.fakes import openai_sse_chunks, sse_response

from .conftest import URL, AsgiCall, auth_headers


class GoneBeforeTheBody(AsgiCall):
    """The client disconnects while the server sends the response's headers: the body is never read."""

    async def _send(self, message):
        await super()._send(message)
        if message["type"] == "http.response.start":
            self.disconnect()
            await asyncio.sleep(30)  # a slow socket: the disconnect cancels the send here


@pytest.mark.django_db(transaction=True)
def test_a_client_gone_before_the_stream_is_read_closes_the_upstream_and_frees_the_hold(fake_ai, user_client):
    upstream = sse_response(openai_sse_chunks(["one ", "two "] * 50), hold_after=3, gate=None)

    async def scenario():
        upstream.body_stream.gate = asyncio.Event()  # never set: the provider is still "thinking"
        fake_ai.add("openai", upstream)
        body = json.dumps({"stream": True, "messages": [{"role": "user", "content": "Say hello"}]}).encode()
        headers = [("content-type", "application/json"), ("authorization", auth_headers(user_client)["Authorization"])]
        call = GoneBeforeTheBody("POST", URL, body=body, headers=headers).start()
        await asyncio.wait_for(call.task, 20)
        await aio.settle(timeout=10)
        assert call.status == 200 and call.chunks == []

    async_to_sync(scenario)()
    assert upstream.body_stream.closed
    assert [str(row.reserved_usd) for row in AiSpend.objects.all()] == ["0.000000"]
