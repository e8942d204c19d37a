"""WS-BaseNotification 2004/06 (draft 01): a NotificationProducer and its subscriptions.

Generic on purpose: topics are Clark QNames, a message is a Message (elements and the
xsi:type a GT4 container wrote into wsnt:Message), and a producer is named by an opaque
key. ``Subscribe`` persists a subscription (itself a WS-Resource with an owner and a
termination time); ``publish`` turns one message into one ``wsnt:Notify`` per active
subscription on the topic and hands it to the delivery queue, so publishing never
waits on a consumer.
"""

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from lxml import etree
from sqlite_utils import Database

from vws.clock import Clock, parse_timestamp, timestamp
from vws.errors import CLIENT, MalformedMessage, UnknownResource, VwsError
from vws.store import rows
from vws.store.database import Store
from vws.wsrf.addressing import EndpointReference, request_headers
from vws.wsrf.lifetime import parse_datetime
from vws.xmlns import GT4_NOTIFICATION, SOAP_ENV, TOPIC_SIMPLE, WSA, WSNT, WSNT_ACTION, WSRL, WSRP, XSI, qname
from vws.xmlparse import XSI_TYPE, adopt, detached, parse

log = logging.getLogger(__name__)

NOTIFY_ACTION = WSNT_ACTION + "Notify"
TERMINATION_TOPIC = qname(WSRL, "ResourceTermination")
VALUE_CHANGE_TYPE = qname(GT4_NOTIFICATION, "ResourcePropertyValueChangeNotificationElementType")


class TopicNotSupported(VwsError):
    """The producer publishes nothing on this topic."""

    fault_code = CLIENT


class UnknownTopicDialect(VwsError):
    """A topic expression dialect other than Simple."""

    fault_code = CLIENT


class InvalidTopicExpression(VwsError):
    """A topic expression that is not a resolvable QName."""

    fault_code = CLIENT


class NoCurrentMessage(VwsError):
    """Nothing has been, or can be, published on the topic yet."""

    fault_code = CLIENT


# ---- messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """What a topic publishes, as a GT4 container wrote it into ``wsnt:Message``.

    GT4 serialized an Axis bean there: ``content`` are the elements it wrote, and
    ``xsi_type`` the bean's type, which a GT4 consumer needs to deserialize the message
    into that bean (None for a bean of an anonymous type, whose fields Axis wrote with
    no xsi:type).
    """

    content: tuple[etree._Element, ...]
    xsi_type: str | None = None  # Clark QName


@dataclass(frozen=True)
class SubscribeRequest:
    consumer: EndpointReference
    topic: str
    termination_time: datetime | None  # None: until the producer goes


def subscribe_request(consumer: EndpointReference, topic: str) -> etree._Element:
    """A ``wsnt:Subscribe`` body for one topic in the Simple dialect (what consumers send)."""
    name = etree.QName(topic)
    body = etree.Element(qname(WSNT, "Subscribe"), nsmap={"wsnt": WSNT, "tns": name.namespace})
    body.append(consumer.to_element(qname(WSNT, "ConsumerReference")))
    expression = etree.SubElement(body, qname(WSNT, "TopicExpression"), Dialect=TOPIC_SIMPLE)
    expression.text = f"tns:{name.localname}"
    return body


def parse_subscribe(body: etree._Element, topics: Iterable[str]) -> SubscribeRequest:
    """A ``wsnt:Subscribe`` body, refused unless its topic is one of ``topics``."""
    consumer = body.find(qname(WSNT, "ConsumerReference"))
    if consumer is None:
        raise MalformedMessage("Subscribe without a ConsumerReference")
    try:
        reference = EndpointReference.from_element(consumer)
    except ValueError as exc:
        raise MalformedMessage(f"bad ConsumerReference: {exc}") from None
    initial = body.findtext(qname(WSNT, "InitialTerminationTime"))
    return SubscribeRequest(
        reference, supported_topic(body, topics), parse_datetime(initial) if initial and initial.strip() else None
    )


def supported_topic(body: etree._Element, topics: Iterable[str]) -> str:
    """The QName of the body's TopicExpression (Subscribe) or Topic (GetCurrentMessage)."""
    expression = body.find(qname(WSNT, "TopicExpression"))
    if expression is None:
        expression = body.find(qname(WSNT, "Topic"))
    if expression is None:
        raise InvalidTopicExpression("the request names no topic")
    dialect = (expression.get("Dialect") or "").strip()
    if dialect != TOPIC_SIMPLE:
        raise UnknownTopicDialect(f"unsupported topic dialect {dialect!r}; use {TOPIC_SIMPLE}")
    text = (expression.text or "").strip()
    prefix, _, local = text.rpartition(":")
    namespace = expression.nsmap.get(prefix or None)
    if not local or namespace is None:
        raise InvalidTopicExpression(f"{text!r} is not a resolvable QName")
    topic = qname(namespace, local)
    if topic not in topics:
        raise TopicNotSupported(f"no notifications are published on {topic}")
    return topic


def subscribe_response(subscription: EndpointReference) -> etree._Element:
    response = etree.Element(qname(WSNT, "SubscribeResponse"), nsmap={"wsnt": WSNT})
    response.append(subscription.to_element(qname(WSNT, "SubscriptionReference")))
    return response


def current_message_response(message: Message) -> etree._Element:
    response = etree.Element(qname(WSNT, "GetCurrentMessageResponse"), nsmap={"wsnt": WSNT})
    for element in message.content:
        adopt(response, detached(element))
    return response


def empty_response(operation: str) -> etree._Element:
    """PauseSubscriptionResponse and ResumeSubscriptionResponse carry nothing."""
    return etree.Element(qname(WSNT, operation + "Response"), nsmap={"wsnt": WSNT})


def value_change(new_value: etree._Element) -> Message:
    """The message of a resource-property topic: the property's new value, typed as GT4 typed it."""
    change = etree.Element(qname(WSRP, "ResourcePropertyValueChangeNotification"), nsmap={"wsrp": WSRP})
    adopt(etree.SubElement(change, qname(WSRP, "NewValue")), new_value)
    return Message((change,), VALUE_CHANGE_TYPE)


def termination(now: datetime) -> Message:
    """The message of the ResourceTermination topic: GT4's TerminationNotification bean, whose
    type is anonymous, so Axis wrote its one field set (TerminationTime) with no xsi:type."""
    time = etree.Element(qname(WSRL, "TerminationTime"), nsmap={"wsrl": WSRL})
    time.text = timestamp(now)
    return Message((time,))


def topic_properties(topics: Iterable[str]) -> list[etree._Element]:
    """The NotificationProducer resource properties: Topic*, FixedTopicSet, dialects."""
    elements = []
    for topic in topics:
        name = etree.QName(topic)
        element = etree.Element(qname(WSNT, "Topic"), nsmap={"wsnt": WSNT, "tns": name.namespace})
        element.set("Dialect", TOPIC_SIMPLE)
        element.text = f"tns:{name.localname}"
        elements.append(element)
    fixed = etree.Element(qname(WSNT, "FixedTopicSet"), nsmap={"wsnt": WSNT})
    fixed.text = "true"
    dialects = etree.Element(qname(WSNT, "TopicExpressionDialects"), nsmap={"wsnt": WSNT})
    dialects.text = TOPIC_SIMPLE
    return [*elements, fixed, dialects]


TOPIC_PROPERTIES = tuple(qname(WSNT, name) for name in ("Topic", "FixedTopicSet", "TopicExpressionDialects"))


def topic_property_renderers(topics: Iterable[str]) -> dict[str, Callable[[], list[etree._Element]]]:
    """The same properties as renderers for a PropertyDocument, in document order."""
    topics = tuple(topics)

    def render(name: str) -> list[etree._Element]:
        return [element for element in topic_properties(topics) if element.tag == name]

    return {name: (lambda name=name: render(name)) for name in TOPIC_PROPERTIES}


def notify_envelope(topic: str, producer: EndpointReference, consumer: EndpointReference, message: Message):
    """The SOAP 1.1 envelope POSTed to a consumer, echoing its reference properties."""
    envelope = etree.Element(qname(SOAP_ENV, "Envelope"), nsmap={"soapenv": SOAP_ENV, "wsa": WSA, "wsnt": WSNT})
    header = etree.SubElement(envelope, qname(SOAP_ENV, "Header"))
    header.extend(request_headers(consumer.address, NOTIFY_ACTION, consumer.properties))
    notify = etree.SubElement(etree.SubElement(envelope, qname(SOAP_ENV, "Body")), qname(WSNT, "Notify"))
    holder = etree.SubElement(notify, qname(WSNT, "NotificationMessage"))
    name = etree.QName(topic)
    expression = etree.SubElement(holder, qname(WSNT, "Topic"), nsmap={"tns": name.namespace})
    expression.set("Dialect", TOPIC_SIMPLE)
    expression.text = f"tns:{name.localname}"
    holder.append(producer.to_element(qname(WSNT, "ProducerReference")))
    typed = message.xsi_type and etree.QName(message.xsi_type)
    nsmap = {"xsi": XSI, "mt": typed.namespace} if typed else None  # mt: the message's type
    written = etree.SubElement(holder, qname(WSNT, "Message"), nsmap=nsmap)
    if typed:
        written.set(XSI_TYPE, typed)
    for element in message.content:  # copies: one message goes into one envelope per subscription
        adopt(written, detached(element))
    return envelope


@dataclass(frozen=True)
class Notification:
    """One message as a consumer receives it (what ``parse_notify`` reads back)."""

    topic: str
    producer: EndpointReference | None
    message: etree._Element  # the first element in wsnt:Message
    xsi_type: str | None = None  # what wsnt:Message says it is, as a Clark QName


def parse_notify(body: etree._Element) -> list[Notification]:
    """The NotificationMessages of a ``wsnt:Notify`` body, for consumers."""
    notifications = []
    for holder in body.iterchildren(qname(WSNT, "NotificationMessage")):
        topic = holder.find(qname(WSNT, "Topic"))
        producer = holder.find(qname(WSNT, "ProducerReference"))
        message = holder.find(qname(WSNT, "Message"))
        if topic is None or message is None or not len(message):
            raise MalformedMessage("a NotificationMessage needs a Topic and a Message")
        notifications.append(
            Notification(
                _qname_value(topic, topic.text),
                EndpointReference.from_element(producer) if producer is not None else None,
                message[0],
                _qname_value(message, message.get(XSI_TYPE)) if message.get(XSI_TYPE) else None,
            )
        )
    return notifications


def _qname_value(element: etree._Element, text: str | None) -> str:
    prefix, _, local = (text or "").strip().rpartition(":")
    return qname(element.nsmap.get(prefix or None, ""), local)


# ---- subscriptions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    key: str
    owner: str
    producer: str
    producer_reference: EndpointReference
    topic: str
    consumer: EndpointReference
    created_at: datetime
    termination_time: datetime | None
    paused: bool


class Subscriptions:
    """Subscriptions in SQLite: each is owned by its subscriber and ends with its producer."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def add(self, owner: str, producer: str, reference: EndpointReference, request: SubscribeRequest) -> Subscription:
        now = self._clock.now()
        if request.termination_time is not None and request.termination_time <= now:
            raise MalformedMessage("InitialTerminationTime is already past")
        row = {
            "key": str(uuid.uuid4()),
            "owner": owner,
            "producer": producer,
            "producer_reference": _xml(reference),
            "topic": request.topic,
            "consumer": _xml(request.consumer),
            "created_at": timestamp(now),
            "termination_time": None if request.termination_time is None else timestamp(request.termination_time),
            "paused": 0,
        }
        with self._store.transaction() as db:
            db["subscriptions"].insert(row)
        return _subscription(row)

    def get(self, owner: str | None, key: str) -> Subscription:
        """The live subscription ``key``; ``owner`` None reads any (the service itself)."""
        with self._store.transaction() as db:
            self._forget_expired(db)
            found = rows.one(db, "select * from subscriptions where key = ?", [key])
        if found is None or (owner is not None and found["owner"] != owner):
            raise UnknownResource(f"no subscription with key {key}")
        return _subscription(found)

    def destroy(self, owner: str | None, key: str) -> None:
        self.get(owner, key)
        with self._store.transaction() as db:
            db["subscriptions"].delete(key)

    def set_termination_time(self, owner: str | None, key: str, when: datetime | None) -> Subscription:
        self.get(owner, key)
        return self._update(key, {"termination_time": None if when is None else timestamp(when)})

    def set_paused(self, owner: str | None, key: str, paused: bool) -> Subscription:
        self.get(owner, key)
        return self._update(key, {"paused": int(paused)})

    def active(self, producer: str, topic: str | None) -> list[Subscription]:
        """The unpaused, unexpired subscriptions of ``producer`` (to ``topic``, unless None), oldest first."""
        where, values = "producer = ? and paused = 0", [producer]
        if topic is not None:
            where, values = where + " and topic = ?", [producer, topic]
        now = timestamp(self._clock.now())
        # Asked at every state change: a read, and a write only when one has expired.
        with self._store.reading() as db:
            found = rows.select(db, f"select * from subscriptions where {where} order by created_at", values)
        live = [row for row in found if row["termination_time"] is None or row["termination_time"] > now]
        if len(live) < len(found):
            with self._store.transaction() as db:
                self._forget_expired(db)
        return [_subscription(row) for row in live]

    def end_consumer(self, producer: str, address: str) -> int:
        """Destroy the subscriptions of one consumer address to one producer; returns how many."""
        doomed = [s.key for s in self.active(producer, None) if s.consumer.address == address]
        with self._store.transaction() as db:
            for key in doomed:
                db["subscriptions"].delete(key)
        return len(doomed)

    def end_producer(self, producer: str) -> int:
        """Destroy every subscription to a producer that is gone; returns how many."""
        with self._store.reading() as db:  # most producers never had one: no write for them
            if db.execute("select 1 from subscriptions where producer = ? limit 1", [producer]).fetchone() is None:
                return 0
        with self._store.transaction() as db:
            return db.execute("delete from subscriptions where producer = ?", [producer]).rowcount

    def _update(self, key: str, changes: dict[str, object]) -> Subscription:
        with self._store.transaction() as db:
            db["subscriptions"].update(key, changes)
            return _subscription(db["subscriptions"].get(key))

    def _forget_expired(self, db: Database) -> None:
        # Expired subscriptions are destroyed lazily, whenever anyone looks.
        db.execute(
            "delete from subscriptions where termination_time is not null and termination_time <= ?",
            [timestamp(self._clock.now())],
        )


def _xml(reference: EndpointReference) -> str:
    return etree.tostring(reference.to_element()).decode()


def _subscription(row: dict) -> Subscription:
    return Subscription(
        key=row["key"],
        owner=row["owner"],
        producer=row["producer"],
        producer_reference=EndpointReference.from_element(parse(row["producer_reference"].encode())),
        topic=row["topic"],
        consumer=EndpointReference.from_element(parse(row["consumer"].encode())),
        created_at=parse_timestamp(row["created_at"]),
        termination_time=parse_timestamp(row["termination_time"]) if row["termination_time"] else None,
        paused=bool(row["paused"]),
    )


# ---- the producer -----------------------------------------------------------------------

# (lane, consumer address, envelope): a lane is delivered in order, one message at a time.
Send = Callable[[str, str, etree._Element], None]


class NotificationProducer:
    """Publishes messages to the subscriptions of any number of producer resources.

    One delivery lane per producer and consumer address: a consumer gets a
    producer's messages in order whatever topics it subscribed to, and a dead
    consumer delays nobody else.
    """

    def __init__(self, subscriptions: Subscriptions, send: Send) -> None:
        self.subscriptions = subscriptions
        self._send = send

    def publish(self, producer: str, topic: str, message: Message) -> int:
        """Queue one Notify per active subscription; returns how many were queued."""
        targets = self.subscriptions.active(producer, topic)
        for subscription in targets:
            envelope = notify_envelope(topic, subscription.producer_reference, subscription.consumer, message)
            self._send(_lane(subscription), subscription.consumer.address, envelope)
        return len(targets)

    def consumer_dead(self, lane: str) -> None:
        """Delivery gave up on a lane: its consumer's subscriptions end."""
        producer, _, address = lane.partition(" ")
        ended = self.subscriptions.end_consumer(producer, address)
        log.warning("consumer %s of %s unreachable: %d subscription(s) ended", address, producer, ended)

    def end(self, producer: str, message: Message) -> None:
        """The producer is gone: publish ResourceTermination, then destroy its subscriptions."""
        self.publish(producer, TERMINATION_TOPIC, message)
        self.subscriptions.end_producer(producer)


def _lane(subscription: Subscription) -> str:
    return f"{subscription.producer} {subscription.consumer.address}"
