"""The generic WS-BaseNotification producer and its delivery queue, with a real HTTP consumer."""

import queue
import socket
import time
from datetime import timedelta

import pytest
from lxml import etree

from clients.listener import NotificationListener
from vws.clock import SystemClock
from vws.errors import MalformedMessage, UnknownResource
from vws.store.database import Store
from vws.wsrf.addressing import EndpointReference
from vws.wsrf.delivery import Delivery, DeliveryPolicy
from vws.wsrf.notification import (
    Message,
    NotificationProducer,
    SubscribeRequest,
    Subscriptions,
    TopicNotSupported,
    UnknownTopicDialect,
    parse_subscribe,
)
from vws.xmlns import TOPIC_SIMPLE, WSNT, qname

TOPIC = qname("urn:test", "level")
PRODUCER = EndpointReference("http://producer.invalid/wsrf/services/Thing")
FAST = DeliveryPolicy(workers=4, timeout=0.5, attempts=3, retry=0.01, drop_after=2)


def message(n: int) -> Message:
    element = etree.Element(qname("urn:test", "level"))
    element.text = str(n)
    return Message((element,))


@pytest.fixture
def subscriptions(clock):
    return Subscriptions(Store(":memory:"), clock)


@pytest.fixture
def listener():
    with NotificationListener(("127.0.0.1", 0)) as running:
        yield running


def delivery(dead: queue.Queue | None = None, **overrides) -> Delivery:
    policy = DeliveryPolicy(**{**FAST.__dict__, **overrides})
    sender = Delivery(SystemClock(), policy, on_dead=(dead or queue.Queue()).put)
    sender.start()
    return sender


def subscribe(subscriptions, consumer: str, owner: str = "alice", producer: str = "p1"):
    request = SubscribeRequest(EndpointReference(consumer), TOPIC, None)
    return subscriptions.add(owner, producer, PRODUCER, request)


def received_levels(listener, count: int) -> list[str]:
    return [listener.received.get(timeout=5).message.text for _ in range(count)]


def test_messages_arrive_in_order_with_topic_and_producer(subscriptions, listener):
    sender = delivery()
    try:
        subscribe(subscriptions, listener.address("http://127.0.0.1/"))
        producer = NotificationProducer(subscriptions, sender.send)
        for n in range(20):
            assert producer.publish("p1", TOPIC, message(n)) == 1
        assert received_levels(listener, 20) == [str(n) for n in range(20)]
    finally:
        sender.stop()


def test_paused_expired_and_other_producers_subscriptions_get_nothing(subscriptions, listener, clock):
    address = listener.address("http://127.0.0.1/")
    paused = subscribe(subscriptions, address)
    subscriptions.set_paused("alice", paused.key, True)
    expiring = subscribe(subscriptions, address)
    subscriptions.set_termination_time("alice", expiring.key, clock.now() + timedelta(minutes=1))
    subscribe(subscriptions, address, producer="p2")
    clock.advance(timedelta(minutes=2))
    assert subscriptions.active("p1", TOPIC) == []
    with pytest.raises(UnknownResource):
        subscriptions.get("alice", expiring.key)
    subscriptions.set_paused("alice", paused.key, False)
    assert [s.key for s in subscriptions.active("p1", TOPIC)] == [paused.key]


def test_a_subscription_belongs_to_its_subscriber_and_ends_with_its_producer(subscriptions):
    mine = subscribe(subscriptions, "http://127.0.0.1:9/")
    with pytest.raises(UnknownResource):
        subscriptions.destroy("mallory", mine.key)
    assert subscriptions.get(None, mine.key).owner == "alice"
    assert subscriptions.end_producer("p1") == 1
    with pytest.raises(UnknownResource):
        subscriptions.get("alice", mine.key)


def test_a_dead_consumer_is_given_up_on_and_its_subscription_reported(subscriptions, listener):
    ended: queue.Queue[str] = queue.Queue()
    sender = delivery(ended)
    try:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead_port = closed.getsockname()[1]
        subscribe(subscriptions, f"http://127.0.0.1:{dead_port}/")
        alive = subscribe(subscriptions, listener.address("http://127.0.0.1/"))
        producer = NotificationProducer(subscriptions, sender.send)
        for n in range(3):
            producer.publish("p1", TOPIC, message(n))
        assert received_levels(listener, 3) == ["0", "1", "2"]
        producer.consumer_dead(ended.get(timeout=10))
        assert sender.pending() == 0
        assert [s.key for s in subscriptions.active("p1", None)] == [alive.key]
    finally:
        sender.stop()


def test_a_hanging_consumer_holds_one_worker_and_nobody_else(subscriptions, listener):
    sender = delivery(timeout=30.0)
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)  # accepts connections, never answers
    try:
        subscribe(subscriptions, f"http://127.0.0.1:{hanging.getsockname()[1]}/")
        subscribe(subscriptions, listener.address("http://127.0.0.1/"))
        producer = NotificationProducer(subscriptions, sender.send)
        started = time.monotonic()
        for n in range(10):
            producer.publish("p1", TOPIC, message(n))
        assert time.monotonic() - started < 0.5  # publishing never waits on a consumer
        assert received_levels(listener, 10) == [str(n) for n in range(10)]
        assert time.monotonic() - started < 5
    finally:
        hanging.close()  # resets the waiting connection, so the worker can stop
        sender.stop()


def test_subscribe_parsing_checks_dialect_and_topic():
    def body(dialect: str, text: str) -> etree._Element:
        subscribe_body = etree.Element(qname(WSNT, "Subscribe"), nsmap={"wsnt": WSNT, "t": "urn:test"})
        subscribe_body.append(EndpointReference("http://consumer/").to_element(qname(WSNT, "ConsumerReference")))
        etree.SubElement(subscribe_body, qname(WSNT, "TopicExpression"), Dialect=dialect).text = text
        return subscribe_body

    assert parse_subscribe(body(TOPIC_SIMPLE, "t:level"), [TOPIC]).topic == TOPIC
    with pytest.raises(UnknownTopicDialect):
        parse_subscribe(body("urn:xpath", "t:level"), [TOPIC])
    with pytest.raises(TopicNotSupported):
        parse_subscribe(body(TOPIC_SIMPLE, "t:other"), [TOPIC])
    without_consumer = body(TOPIC_SIMPLE, "t:level")
    without_consumer.remove(without_consumer[0])
    with pytest.raises(MalformedMessage):
        parse_subscribe(without_consumer, [TOPIC])


def test_listener_refuses_what_is_not_a_notify(listener):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", listener._server.server_address[1], timeout=5)
    connection.request("POST", "/", b"<not-soap/>")
    assert connection.getresponse().status == 400
    with pytest.raises(queue.Empty):
        listener.received.get_nowait()
