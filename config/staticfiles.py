"""WhiteNoise for a web tier that speaks ASGI.

WhiteNoise's middleware answers with a FileResponse over a plain file object.
Django's ASGI handler can only stream an async iterator: given a sync one it
reads the whole file in a thread and warns on every static request
("StreamingHttpResponse must consume synchronous iterators"). Under ASGI this
middleware hands the same file over as an async iterator whose reads run off
the event loop, so admin CSS and Swagger UI stream quietly; under WSGI the
response is left exactly as WhiteNoise made it (the server's file wrapper).
"""

import asyncio

from django.core.handlers.asgi import ASGIRequest
from whitenoise.middleware import WhiteNoiseMiddleware

CHUNK_BYTES = 64 * 1024


async def _read_async(filelike):
    while chunk := await asyncio.to_thread(filelike.read, CHUNK_BYTES):
        yield chunk


async def _nothing():
    return
    yield  # an async generator that yields nothing (HEAD, 304)


class AsgiWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    def serve(self, static_file, request):
        response = super().serve(static_file, request)
        if isinstance(request, ASGIRequest):
            filelike = response.file_to_stream
            # The file stays registered with the response, which closes it
            # when the server is done; only the way it is read changes.
            response.streaming_content = _read_async(filelike) if filelike is not None else _nothing()
        return response
