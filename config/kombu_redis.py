"""kombu's Redis transport (the default broker) with one redis-py client per channel, not one per operation.

kombu's Redis channel builds a new `redis.Redis` object whenever it sends a command outside its
consuming connection (`Channel.conn_or_acquire`): for every message published, every message a
worker takes with late acks (its copy in the unacked hash) and every ack. redis-py fills ~700
response callbacks into each new client object (~0.1 ms of CPU), so a worker's main process paid
~0.2 ms per task, and every `apply_async` 0.1 ms, on objects dropped at once (issue 11, the
scale-out bench). A client object holds no connection of its own: it takes one from the channel's
pool for each command and gives it back, and is safe to share between threads. One per channel and
pool sends the same commands over the same connections.
"""

from contextlib import contextmanager

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        shared = self._shared_client
        # A pool dropped on a connection error (kombu's _disconnect_pools) is replaced: so is its client.
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(redis.Transport):
    Channel = Channel
