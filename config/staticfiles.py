"""WhiteNoise for a web tier that speaks ASGI.

WhiteNoise's middleware answers with a FileResponse over a plain file object.
Django's ASGI handler can only stream an async iterator: given a sync one it
reads the whole file in a thread and warns on every static request
("StreamingHttpResponse must consume synchronous iterators"). Under ASGI this
middleware hands the same file over as an async iterator whose reads run off
the event loop, so admin CSS and Swagger UI stream quietly; under WSGI the
response is left exactly as WhiteNoise made it (the server's file wrapper).

It is async-capable too: WhiteNoise's own middleware is sync-only, and one
sync-only middleware in the chain makes Django run everything below it, the
async AI views included, through async_to_sync in a thread with a fresh event
loop per request (new provider and Redis connections every time).
"""

import asyncio

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
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
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self._async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        # WhiteNoise's __call__, awaiting the rest of the chain instead of calling it.
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)

    def serve(self, static_file, request):
        response = super().serve(static_file, request)
        if isinstance(request, ASGIRequest):
            filelike = response.file_to_stream
            # The file stays registered with the response, which closes it
            # when the server is done; only the way it is read changes.
            response.streaming_content = _read_async(filelike) if filelike is not None else _nothing()
        return response
