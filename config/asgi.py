"""The hub's web entry point: `gunicorn -c config/gunicorn.conf.py config.asgi:application`.

ASGI, so that the async AI endpoints hold a coroutine, not a worker, while a
provider streams for a minute; a request for any other (sync) view runs whole in
one hop to a thread (config.asgi_handler).

Warm workers: the modules every request needs are imported when this module
loads (config.warmup.warm; once, in gunicorn's master, with preload), and each
worker's event loop warms its own connections at ASGI lifespan startup, before
the server accepts a request.
"""

import asyncio
import os

from asgiref.sync import sync_to_async

from config.asgi_handler import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

from ai import leases  # noqa: E402
from config.warmup import warm, warm_loop  # noqa: E402 - needs the apps loaded above
from integrations.aio import serve_on, settle  # noqa: E402
from integrations.gateway import batchlog, bookings  # noqa: E402

warm()


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            serve_on(asyncio.get_running_loop())  # this loop outlives requests: bookings may follow answers
            if settings.SYNC_VIEW_THREADS:  # with the pool: call-log rows of answered requests in batches
                batchlog.start()
                bookings.start()  # and answered AI calls' bookings
                leases.start()  # and slices of active users' AI budgets, given back when idle
            await warm_loop(django_application)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Bookings of answers already sent (integrations.aio.in_background) are written before the worker exits.
            await settle(timeout=settings.AI_DEADLINE_SECONDS)
            await sync_to_async(bookings.stop, thread_sensitive=False)()
            await sync_to_async(leases.stop, thread_sensitive=False)()  # every answer booked: give them all back
            await sync_to_async(batchlog.stop, thread_sensitive=False)()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await django_application(scope, receive, send)
