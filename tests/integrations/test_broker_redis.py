"""The Redis broker (config.kombu_redis): kombu's Redis transport with one redis-py client per channel, not one
per message published, taken and acknowledged, and a taken message's unacked copy kept and dropped by one script
each; messages still go, come back unacknowledged, and survive a pool kombu dropped."""

import json
import threading
import uuid
from queue import Empty

import pytest
import redis
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Producer, Queue

import config.celery  # noqa: F401 - installs the redis:// transport alias
from config import kombu_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def broker():
    with Connection(settings.REDIS_URL) as conn:
        yield conn


@pytest.fixture
def queue_name(broker):
    name = f"test-broker-{uuid.uuid4().hex}"
    yield name
    with broker.channel() as channel:
        channel.queue_delete(name)


@pytest.fixture
def clients_built(monkeypatch):
    built = []
    init = redis.Redis.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    return built


def test_the_broker_url_gets_the_hubs_transport(broker):
    assert isinstance(broker.transport, kombu_redis.Transport)


def test_messages_are_sent_taken_and_acknowledged_without_a_client_object_each(broker, queue_name, clients_built):
    with broker.SimpleQueue(queue_name) as queue:
        for i in range(20):
            queue.put({"n": i})
        taken = []
        for _ in range(20):
            message = queue.get(timeout=5)  # taken with ack emulation: a copy waits in the unacked hash
            taken.append(message.payload["n"])
            message.ack()
        channel = queue.channel
        assert taken == list(range(20))
        assert len(clients_built) <= 3  # kombu built 60 (one per put, per take and per ack)
        with channel.conn_or_acquire() as client:
            assert client.hlen(channel.unacked_key) == 0  # every ack removed its copy


def test_a_message_taken_and_not_acknowledged_comes_back_when_its_connection_closes(queue_name):
    with Connection(settings.REDIS_URL) as taker:  # a worker shutting down mid-task
        queue = taker.SimpleQueue(queue_name)
        queue.put({"n": 1})
        assert queue.get(timeout=5).payload == {"n": 1}  # never acked
    with Connection(settings.REDIS_URL) as other, other.SimpleQueue(queue_name) as queue:
        message = queue.get(timeout=5)
        assert message.payload == {"n": 1}
        message.ack()


def test_a_pool_kombu_dropped_gets_a_client_of_its_own(broker, queue_name):
    with broker.SimpleQueue(queue_name) as queue:
        queue.put({"n": 1})
        channel = queue.channel
        with channel.conn_or_acquire() as before:
            pass
        channel._disconnect_pools()  # what kombu does after a connection error
        queue.put({"n": 2})
        with channel.conn_or_acquire() as after:
            assert after is not before and after.connection_pool is channel.pool
        received = []
        for _ in range(2):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        assert sorted(received) == [1, 2]


def test_a_waiting_message_is_taken_and_kept_unacked_in_one_round_trip_and_dropped_by_one_script(
    broker, queue_name, redis_round_trips
):
    with broker.SimpleQueue(queue_name) as queue:
        queue.put({"n": 1})
        channel = queue.channel
        redis_round_trips.clear()
        message = queue.get(timeout=5)
        assert redis_round_trips == [["EVAL"]]  # kombu: BRPOP, then MULTI, ZADD, HSET, EXEC
        tag = message.delivery_tag
        with channel.conn_or_acquire() as client:
            # What kombu's own restore reads (QoS.restore_by_tag, restore_visible): the raw message, exchange,
            # routing key, and the time it was taken.
            raw, exchange, routing_key = json.loads(client.hget(channel.unacked_key, tag))
            assert raw["properties"]["delivery_tag"] == tag
            assert (exchange, routing_key) == (queue_name, queue_name)
            assert client.zscore(channel.unacked_index_key, tag) is not None
        redis_round_trips.clear()
        message.ack()
        assert redis_round_trips == [["EVALSHA"]]  # kombu: MULTI, ZREM, HDEL, EXEC
        with channel.conn_or_acquire() as client:
            assert client.hget(channel.unacked_key, tag) is None
            assert client.zscore(channel.unacked_index_key, tag) is None


def test_an_unacked_copy_kept_by_the_script_is_restored_by_kombu(broker, queue_name):
    with broker.SimpleQueue(queue_name) as queue:
        queue.put({"n": 7})
        channel = queue.channel
        message = queue.get(timeout=5)
        channel.qos.restore_by_tag(message.delivery_tag)  # what kombu does for a message whose worker was lost
        with channel.conn_or_acquire() as client:
            assert client.hget(channel.unacked_key, message.delivery_tag) is None
        again = queue.get(timeout=5)
        assert again.payload == {"n": 7}
        again.ack()


def test_the_scripts_are_loaded_again_when_redis_forgot_them(broker, queue_name):
    with broker.SimpleQueue(queue_name) as queue:
        queue.put({"n": 1})
        channel = queue.channel
        with channel.conn_or_acquire() as client:
            client.script_flush()  # a Redis restart, or a failover to a replica that never saw them
        message = queue.get(timeout=5)
        message.ack()
        with channel.conn_or_acquire() as client:
            assert client.hlen(channel.unacked_key) == 0


def test_an_empty_queue_is_waited_on_and_a_message_that_comes_meanwhile_is_kept_unacked(
    broker, queue_name, redis_round_trips
):
    with broker.SimpleQueue(queue_name) as queue:
        channel = queue.channel
        redis_round_trips.clear()
        with pytest.raises(Empty):
            queue.get(timeout=0.3)  # the take found nothing: the next one blocks on BRPOP
        sender = threading.Timer(0.3, lambda: Connection(settings.REDIS_URL).SimpleQueue(queue_name).put({"n": 2}))
        sender.start()
        message = queue.get(timeout=5)
        sender.join()
        assert message.payload == {"n": 2}
        assert ["BRPOP"] in redis_round_trips and ["EVALSHA"] in redis_round_trips  # kept as kombu keeps it
        with channel.conn_or_acquire() as client:
            raw, _, _ = json.loads(client.hget(channel.unacked_key, message.delivery_tag))
            assert raw["properties"]["delivery_tag"] == message.delivery_tag
            assert client.zscore(channel.unacked_index_key, message.delivery_tag) is not None
        message.ack()
        queue.put({"n": 3})  # and the take after that tries the one-round-trip script again
        redis_round_trips.clear()
        again = queue.get(timeout=5)
        assert again.payload == {"n": 3} and redis_round_trips == [["EVAL"]]
        again.ack()
        with channel.conn_or_acquire() as client:
            assert client.hlen(channel.unacked_key) == 0


def test_the_take_reads_the_queues_priorities_in_brpops_order(broker, queue_name):
    with broker.SimpleQueue(queue_name) as queue:
        queue.put({"n": "later"}, priority=9)
        queue.put({"n": "first"}, priority=0)
        taken = []
        for _ in range(2):
            message = queue.get(timeout=5)
            taken.append(message.payload["n"])
            message.ack()
        assert taken == ["first", "later"]


def test_a_message_whose_worker_died_after_the_take_comes_back_after_the_visibility_timeout(queue_name):
    taker = Connection(settings.REDIS_URL)
    queue = taker.SimpleQueue(queue_name)
    queue.put({"n": 5})
    assert queue.get(timeout=5).payload == {"n": 5}  # taken by the script; then the process is killed: no ack
    try:
        with Connection(settings.REDIS_URL, transport_options={"visibility_timeout": 0}) as other:
            other.default_channel.qos.restore_visible(num=1)  # what a live worker's kombu does every so often
            with other.SimpleQueue(queue_name) as again:
                message = again.get(timeout=5)
                assert message.payload == {"n": 5}
                message.ack()
    finally:
        taker.release()


def test_a_consumer_that_does_not_acknowledge_gets_no_unacked_copy(broker, queue_name):
    """Celery's control replies (`celery -A config inspect ...`) are consumed without acks: kombu keeps no copy
    for them, and one kept by the take would never be dropped, so kombu would put the reply back after the
    visibility timeout into a queue nobody reads."""
    queue = Queue(queue_name, Exchange(queue_name), routing_key=queue_name)
    with broker.channel() as channel:
        Producer(channel).publish({"n": 1}, exchange=queue.exchange, routing_key=queue_name, declare=[queue])
        taken = []
        with Consumer(channel, [queue], no_ack=True, callbacks=[lambda body, message: taken.append(message)]):
            broker.drain_events(timeout=5)
        assert [message.payload for message in taken] == [{"n": 1}]
        with channel.conn_or_acquire() as client:
            assert client.hget(channel.unacked_key, taken[0].delivery_tag) is None
            assert client.zscore(channel.unacked_index_key, taken[0].delivery_tag) is None
