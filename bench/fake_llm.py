"""A fake OpenAI-compatible provider for the serving benchmarks (stdlib asyncio, one process).

    python bench/fake_llm.py PORT STREAM_SECONDS

POST /v1/chat/completions answers at once; with "stream": true it sends 20
content chunks spread evenly over STREAM_SECONDS, then usage and [DONE]. It
keeps connections alive and disables Nagle's algorithm, like a real API behind
a load balancer, and serves hundreds of open streams from one event loop, so
what a benchmark measures is the server in front of it.
"""

import asyncio
import json
import socket
import sys

CHUNKS = 20


def _chunk(delta, finish=None, usage=None):
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    body["choices"] = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


USAGE = {"prompt_tokens": 20, "completion_tokens": CHUNKS, "total_tokens": 20 + CHUNKS}
ANSWER = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
        "usage": USAGE,
    }
).encode()


async def _read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return lines[0], body


async def _stream(writer, seconds):
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
        b"x-request-id: req_fake\r\n\r\n"
    )

    def send(data):
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    send(_chunk({"role": "assistant", "content": ""}))
    await writer.drain()
    for i in range(CHUNKS):
        await asyncio.sleep(seconds / CHUNKS)
        send(_chunk({"content": f"w{i} "}))
        await writer.drain()
    send(_chunk({}, "stop") + _chunk(None, usage=USAGE) + b"data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _serve(reader, writer, seconds):
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            try:
                line, body = await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if line.startswith("GET"):
                payload = b'{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
            elif json.loads(body or b"{}").get("stream"):
                await _stream(writer, seconds)
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_fake\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                )
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port, seconds):
    server = await asyncio.start_server(lambda r, w: _serve(r, w, seconds), "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
