"""kombu's Redis transport (the default broker) with one redis-py client per channel, not one per operation,
and a message's unacked copy written and removed by one Lua script each instead of a MULTI/EXEC pipeline.

kombu's Redis channel builds a new `redis.Redis` object whenever it sends a command outside its
consuming connection (`Channel.conn_or_acquire`): for every message published, every message a
worker takes with late acks (its copy in the unacked hash) and every ack. redis-py fills ~700
response callbacks into each new client object (~0.1 ms of CPU), so a worker's main process paid
~0.2 ms per task, and every `apply_async` 0.1 ms, on objects dropped at once (issue 11, the
scale-out bench). A client object holds no connection of its own: it takes one from the channel's
pool for each command and gives it back, and is safe to share between threads. One per channel and
pool sends the same commands over the same connections.

With late acks every task's message is copied into the unacked hash and its index when a worker
takes it (kombu: MULTI, ZADD, HSET, EXEC) and removed from both when the task ends (MULTI, ZREM,
HDEL, EXEC). That bookkeeping was about a third of the worker's main process's CPU per task (the
one process that takes, hands out and acks for every child: bench/profile_outbound_job.py), most of
it redis-py packing four commands and parsing four replies per transaction. Here each is one
EVALSHA of a script doing the same two writes: still atomic (a script runs whole, as MULTI/EXEC
does), the same keys, values and scores, so kombu's own restore of unacked messages (visibility
timeout, shutdown, a worker lost) reads them as before.
"""

from contextlib import contextmanager
from time import time

from kombu.transport import redis, virtual
from kombu.utils.json import dumps

# KEYS: the unacked index (sorted set), the unacked hash; ARGV: delivery tag, time taken, kombu's copy.
_KEEP_UNACKED = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
"""
# KEYS: as above; ARGV: delivery tag.
_DROP_UNACKED = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
"""


class QoS(redis.QoS):
    def append(self, message, delivery_tag):
        delivery = message.delivery_info
        payload = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        self.channel.run_script(
            "keep_unacked", [self.unacked_index_key, self.unacked_key], [delivery_tag, time(), payload]
        )
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag):
        self.channel.run_script("drop_unacked", [self.unacked_index_key, self.unacked_key], [delivery_tag])
        virtual.QoS.ack(self, delivery_tag)


class Channel(redis.Channel):
    QoS = QoS
    _shared_client = None
    _scripts = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        shared = self._shared_client
        # A pool dropped on a connection error (kombu's _disconnect_pools) is replaced: so is its client.
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
            self._scripts = {
                "keep_unacked": shared.register_script(_KEEP_UNACKED),
                "drop_unacked": shared.register_script(_DROP_UNACKED),
            }
        yield shared

    def run_script(self, name, keys, args):
        """One of this module's scripts, on the channel's client (loaded again if the server forgot it)."""
        with self.conn_or_acquire() as client:
            return self._scripts[name](keys, args, client=client)


class Transport(redis.Transport):
    Channel = Channel
