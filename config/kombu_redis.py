"""kombu's Redis transport (the default broker) with one redis-py client per channel, not one per operation,
a message's unacked copy written and removed by one Lua script each instead of a MULTI/EXEC pipeline, and
while messages wait, the take and the copy in one script (Channel).

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
from queue import Empty
from time import monotonic, time

from kombu.transport import redis, virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

# KEYS: the unacked index (sorted set), the unacked hash; ARGV: delivery tag, time taken, kombu's copy.
_KEEP_UNACKED = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
"""
# KEYS: the queues' lists in BRPOP's order, then the unacked index and hash; ARGV: time taken.
# The first message of the first list that has one, popped and kept unacked in the same atomic step:
# {list, message, 1}; {list, message, 0} for a message whose tag or delivery info it cannot read (kombu
# then keeps it, or refuses it, as after a BRPOP); nil when every list is empty.
_TAKE_AND_KEEP = """
local n = #KEYS - 2
for i = 1, n do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, message = pcall(cjson.decode, item)
    local props = ok and type(message) == 'table' and message['properties']
    local info = type(props) == 'table' and props['delivery_info']
    local tag = type(props) == 'table' and props['delivery_tag']
    if type(tag) ~= 'string' or type(info) ~= 'table' or type(info['exchange']) ~= 'string'
        or type(info['routing_key']) ~= 'string' then
      return {KEYS[i], item, 0}
    end
    redis.call('ZADD', KEYS[n + 1], ARGV[1], tag)
    redis.call('HSET', KEYS[n + 2], tag,
      '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']')
    return {KEYS[i], item, 1}
  end
end
return false
"""
# KEYS: as above; ARGV: delivery tag.
_DROP_UNACKED = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
"""


class QoS(redis.QoS):
    def append(self, message, delivery_tag):
        kept = self.channel._kept_by_take
        if delivery_tag in kept:  # the take kept its copy already (Channel._brpop_start)
            kept.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
            return
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
    """kombu's channel, taking a message and keeping its unacked copy in one round trip while messages wait.

    kombu takes a message with BRPOP (blocking until one comes) and then writes its unacked copy with
    a second round trip (QoS.append), before the message goes to the task: two round trips per message
    in the worker's main process, the one process that takes for every pool child. While messages wait,
    a script does both at once instead (_TAKE_AND_KEEP: RPOP from the same lists in BRPOP's order, then
    the same ZADD and HSET as QoS.append's); only when it finds every list empty does the next take
    block on BRPOP, as before, and a message BRPOP returns is kept by QoS.append, as before. A worker
    that dies between the take and the copy can no longer lose the message: there is no between.
    """

    QoS = QoS
    _shared_client = None
    _scripts = None
    _block_next = False  # the last take found nothing: wait on BRPOP
    _taking = False  # the pending reply on the BRPOP connection is the script's

    def __init__(self, *args, **kwargs):
        self._kept_by_take = set()  # delivery tags whose unacked copy the take wrote
        self._no_ack_queues = set()  # consumed without acks: kombu keeps no copy, so the take must not
        super().__init__(*args, **kwargs)

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        # A consumer without acks (Celery's control replies, `celery inspect`) is taken from by kombu's own
        # path: a copy the take kept would never be dropped, and kombu would put it back later.
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _basic_cancel(self, consumer_tag):
        self._no_ack_queues.discard(self._tag_to_queue.get(consumer_tag))
        return super()._basic_cancel(consumer_tag)

    def _brpop_start(self, timeout=None):
        if self._block_next or self.global_keyprefix or self._no_ack_queues:
            self._block_next = False
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self._taking = True
        self.client.connection.send_command(
            "EVAL", _TAKE_AND_KEEP, len(keys) + 2, *keys, self.unacked_index_key, self.unacked_key, time()
        )

    def _brpop_read(self, **options):
        if not self._taking:
            return super()._brpop_read(**options)
        self._taking = False
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVAL", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not reply:
                self._block_next = True
                raise Empty()
            dest, item, kept = reply
            message = loads(bytes_to_str(item))
            if kept:
                self._kept_by_take.add(message["properties"]["delivery_tag"])
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

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
