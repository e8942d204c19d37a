"""Notifications end to end: Subscribe over HTTP, state changes, Notify to a real consumer."""

import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from lxml import etree

from clients import monitor
from clients.listener import NotificationListener, notified_state
from clients.resource import DESTROYED
from tests.callers import ALICE, BOB, client, serve
from tests.conftest import make_config
from tests.deployments import Gt4Remote, settler, wait_options
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from tests.logwatch import LogWatch
from tests.resources import (
    STATE_TOPIC,
    TERMINATION_TOPIC,
    create,
    create_request,
    subscribe,
    subscription_call,
)
from tests.test_wsdl import assert_valid
from vws.service import Service
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import GT4_NOTIFICATION, TOPIC_SIMPLE, TYPES, WORKSPACE, WSNT, WSNT_ACTION, WSRL, WSRP, qname


@pytest.fixture
def listener():
    with NotificationListener(("127.0.0.1", 0)) as running:
        yield running


def states(listener: NotificationListener, count: int) -> list[str]:
    return [notified_state(listener.received.get(timeout=10)).state for _ in range(count)]


def propagated(gt4):
    (epr,) = created_eprs(create(gt4, create_request(initial_state="Propagated")))
    return epr


def subscribe_both(gt4, epr, listener) -> None:
    consumer = listener.consumer_reference(gt4.base_url)
    for topic in (STATE_TOPIC, TERMINATION_TOPIC):
        subscribe(gt4, epr, consumer, topic)


def test_consumer_receives_running_then_cancelled_then_termination_in_order(gt4, listener):
    epr = propagated(gt4)
    subscribe_both(gt4, epr, listener)
    gt4.start(epr)
    gt4.shutdown(epr, "Pause")
    gt4.start(epr)
    gt4.destroy(epr)
    assert states(listener, 5) == ["Running", "Paused", "Running", "Cancelled", DESTROYED]
    with pytest.raises(queue.Empty):
        listener.received.get(timeout=0.2)


def test_notify_carries_topic_producer_and_echoed_consumer_key(gt4, listener):
    epr = propagated(gt4)
    consumer = listener.consumer_reference(gt4.base_url)
    subscribe(gt4, epr, consumer, STATE_TOPIC)
    gt4.start(epr)
    notification = listener.received.get(timeout=10)
    assert notification.topic == STATE_TOPIC
    key = qname(WORKSPACE, "WorkspaceKey")
    assert (notification.producer.address, notification.producer.key(key)) == (epr.address, epr.key(key))
    assert notification.message.tag == qname(WSRP, "ResourcePropertyValueChangeNotification")


def test_each_topic_message_is_written_as_gt4_wrote_it(gt4, listener):
    """wsnt:Message is xsd:anyType: a state change names GT4's bean type in xsi:type (an Axis
    consumer deserializes it by that name); the termination is the anonymous-typed
    TerminationNotification's field, untyped. Each Notify is checked as received, against
    the listener contract, with every subscriber getting the whole message."""
    epr = propagated(gt4)
    subscribe_both(gt4, epr, listener)
    subscribe(gt4, epr, listener.consumer_reference(gt4.base_url), STATE_TOPIC)  # a second subscriber
    gt4.destroy(epr)
    received = [listener.received.get(timeout=10) for _ in range(3)]
    changes = [n for n in received if n.topic == STATE_TOPIC]
    (terminated,) = [n for n in received if n.topic == TERMINATION_TOPIC]
    assert len(changes) == 2
    for change in changes:
        assert change.xsi_type == qname(GT4_NOTIFICATION, "ResourcePropertyValueChangeNotificationElementType")
        assert change.message.tag == qname(WSRP, "ResourcePropertyValueChangeNotification")
        assert notified_state(change).state == "Cancelled"
    assert terminated.xsi_type is None
    assert terminated.message.tag == qname(WSRL, "TerminationTime")
    for notification in received:
        notify = notification.message.getparent().getparent().getparent()
        assert notify.tag == qname(WSNT, "Notify")
        assert_valid("NotificationConsumerService", notify)


def test_get_current_message_and_topic_properties(gt4):
    epr = propagated(gt4)
    body = etree.Element(qname(WSNT, "GetCurrentMessage"), nsmap={"wsnt": WSNT, "t": TYPES})
    etree.SubElement(body, qname(WSNT, "Topic"), Dialect=TOPIC_SIMPLE).text = "t:currentState"
    reply = gt4.call(epr, WSNT_ACTION + "GetCurrentMessage", body)
    assert reply.findtext(f".//{{{TYPES}}}state") == "Propagated"
    topics = gt4.get_property(epr, qname(WSNT, "Topic"))
    assert [t.text.split(":")[1] for t in topics] == ["currentState", "ResourceTermination", "ResourceAllocation"]


@pytest.mark.parametrize(
    "dialect, topic, fault",
    [
        ("urn:no-such-dialect", "t:currentState", "TopicPathDialectUnknownFault"),
        (TOPIC_SIMPLE, "t:schedule", "TopicNotSupportedFault"),
        (TOPIC_SIMPLE, "nope:currentState", "InvalidTopicExpressionFault"),
    ],
)
def test_subscribe_refusals_get_their_declared_faults(gt4, listener, dialect, topic, fault):
    epr = propagated(gt4)
    body = etree.Element(qname(WSNT, "Subscribe"), nsmap={"wsnt": WSNT, "t": TYPES})
    body.append(listener.consumer_reference(gt4.base_url).to_element(qname(WSNT, "ConsumerReference")))
    etree.SubElement(body, qname(WSNT, "TopicExpression"), Dialect=dialect).text = topic
    with pytest.raises(SoapFault) as raised:
        gt4.call(epr, WSNT_ACTION + "Subscribe", body)
    assert raised.value.element == qname(WSNT, fault)


def test_pause_resume_and_destroy_a_subscription(gt4, listener):
    epr = propagated(gt4)
    subscription = subscribe(gt4, epr, listener.consumer_reference(gt4.base_url), STATE_TOPIC)
    subscription_call(gt4, subscription, "PauseSubscription")
    gt4.start(epr)
    gt4.shutdown(epr, "Pause")
    subscription_call(gt4, subscription, "ResumeSubscription")
    gt4.start(epr)
    assert states(listener, 1) == ["Running"]
    subscription_call(gt4, subscription, "Destroy")
    gt4.shutdown(epr, "Pause")
    with pytest.raises(queue.Empty):
        listener.received.get(timeout=0.2)


def test_a_subscription_publishes_what_it_is_as_resource_properties(gt4, listener):
    epr = propagated(gt4)
    consumer = listener.consumer_reference(gt4.base_url)
    subscription = subscribe(gt4, epr, consumer, STATE_TOPIC)
    topic = gt4.get_property(subscription, qname(WSNT, "TopicExpression"))[0]
    assert topic.text.endswith(":currentState") and topic.get("Dialect") == TOPIC_SIMPLE
    reference = gt4.get_property(subscription, qname(WSNT, "ConsumerReference"))[0]
    assert EndpointReference.from_element(reference).address == consumer.address
    subscription_call(gt4, subscription, "Destroy")
    with pytest.raises(SoapFault):
        gt4.get_property(subscription, qname(WSNT, "TopicExpression"))


def test_subscriptions_are_owned_and_end_with_the_workspace(tmp_path, clock, listener):
    with serve(tmp_path / "state", clock) as service:
        alice, bob = client(service, ALICE), client(service, BOB)
        (epr,) = created_eprs(create(alice, create_request()))
        subscription = subscribe(alice, epr, listener.consumer_reference(alice.base_url), STATE_TOPIC)
        with pytest.raises(SoapFault):
            subscribe(bob, epr, listener.consumer_reference(bob.base_url), STATE_TOPIC)
        with pytest.raises(SoapFault) as stranger:
            subscription_call(bob, subscription, "Destroy")
        assert stranger.value.element == qname(WSRL, "ResourceUnknownFault")
        alice.destroy(epr)
        with pytest.raises(SoapFault) as gone:
            subscription_call(alice, subscription, "Destroy")
        assert gone.value.element == qname(WSRL, "ResourceUnknownFault")
        alice.close()
        bob.close()


def test_dead_and_hanging_consumers_slow_neither_requests_nor_other_consumers(gt4, listener):
    with socket.socket() as refused:
        refused.bind(("127.0.0.1", 0))
        refused_port = refused.getsockname()[1]
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)  # accepts, never answers: each attempt waits the whole timeout
    try:
        epr = propagated(gt4)
        for port in (refused_port, hanging.getsockname()[1]):
            dead = listener.consumer_reference(gt4.base_url).__class__(f"http://127.0.0.1:{port}/")
            subscribe(gt4, epr, dead, STATE_TOPIC)
        subscribe(gt4, epr, listener.consumer_reference(gt4.base_url), STATE_TOPIC)
        started = time.monotonic()
        for _ in range(5):
            gt4.start(epr)
            gt4.shutdown(epr, "Pause")
        elapsed = time.monotonic() - started
        assert states(listener, 10) == ["Running", "Paused"] * 5
        assert time.monotonic() - started < 3  # the consumer that hangs holds a 5 s timeout
        assert elapsed < 2
    finally:
        hanging.close()


@pytest.mark.parametrize("poll", [False, True], ids=["notifications", "polling"])
def test_client_waits_for_the_exit_state(gt4, poll):
    epr = propagated(gt4)
    waiter = ThreadPoolExecutor(1).submit(
        monitor.wait_for, [epr], "Paused", Gt4Remote(gt4), wait_options(poll=poll, timeout=30), gt4.base_url
    )
    actor = type(gt4)(gt4.base_url)  # the waiting client has its own connection
    actor.start(epr)
    actor.shutdown(epr, "Pause")
    assert waiter.result(timeout=30) == 0
    actor.close()


def test_client_exits_3_when_the_workspace_is_destroyed_instead(gt4):
    epr = propagated(gt4)
    subscribed = threading.Event()
    waiter = ThreadPoolExecutor(1).submit(
        monitor.wait_for, [epr], "Running", Subscribing(gt4, subscribed), wait_options(timeout=30), gt4.base_url
    )
    actor = type(gt4)(gt4.base_url)
    assert subscribed.wait(10)
    actor.destroy(epr)
    assert waiter.result(timeout=30) == monitor.EXIT_STATE
    actor.close()


class Subscribing(Gt4Remote):
    """Tells ``subscribed`` when the client has subscribed to both topics."""

    def __init__(self, client: Gt4Client, subscribed: threading.Event) -> None:
        super().__init__(client)
        self._subscribed = subscribed
        self._subscriptions = 0

    def raw(self, target, action, body):
        reply = super().raw(target, action, body)
        self._subscriptions += action == WSNT_ACTION + "Subscribe"
        if self._subscriptions == 2:
            self._subscribed.set()
        return reply


def test_notifications_owed_at_a_stop_are_delivered_after_the_next_start(tmp_path, clock):
    """The consumer is down when the state changes; the service stops and starts again; it comes back."""
    config = make_config(tmp_path / "state").with_overrides("notification", attempts=1000)
    with NotificationListener(("127.0.0.1", 0)) as first:
        port = first._server.server_address[1]
        consumer = first.consumer_reference("http://127.0.0.1/")
    service = Service(config, clock=clock)
    service.start()
    try:
        gt4 = Gt4Client(service.base_url, settle=settler(service))
        (epr,) = created_eprs(gt4.create())
        subscribe(gt4, epr, consumer, STATE_TOPIC)
        gt4.shutdown(epr, "Pause")  # its Notify finds nobody listening
        gt4.close()
    finally:
        service.stop()
    with NotificationListener(("127.0.0.1", port)) as back:
        service = Service(config, clock=clock)
        service.start()
        try:
            assert notified_state(back.received.get(timeout=10)).state == "Paused"
            assert service.delivery.pending() == 0
        finally:
            service.stop()


def test_a_consumer_gone_for_the_configured_number_of_messages_loses_its_subscriptions(tmp_path, clock):
    """Each message is dropped before the next is sent: the count of failures in a row still adds up."""
    config = make_config(tmp_path / "state").with_overrides("notification", attempts=1, drop_after=2)
    service = Service(config, clock=clock)
    service.start()
    gt4 = Gt4Client(service.base_url, settle=settler(service))
    try:
        epr = propagated(gt4)
        with NotificationListener(("127.0.0.1", 0)) as went_away:
            subscription = subscribe(gt4, epr, went_away.consumer_reference(gt4.base_url), STATE_TOPIC)
        with LogWatch("vws.wsrf.delivery", "dropped") as dropped, LogWatch("vws.wsrf.notification", "ended") as ended:
            gt4.start(epr)
            assert dropped.wait()
            gt4.shutdown(epr, "Pause")
            assert dropped.wait()
            assert ended.wait()
        with pytest.raises(SoapFault) as gone:
            subscription_call(gt4, subscription, "Destroy")
        assert gone.value.element == qname(WSRL, "ResourceUnknownFault")
    finally:
        gt4.close()
        service.stop()
