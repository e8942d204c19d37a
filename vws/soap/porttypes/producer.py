"""The workspace as a NotificationProducer: its topics, Subscribe, GetCurrentMessage.

Three topics: ``currentState`` and ``neg:ResourceAllocation`` (resource-property
topics, each message the new value) and ``wsrl:ResourceTermination``. StatePublisher
is a WorkspaceManager listener: it publishes whenever the state a client sees changes,
and when the workspace is gone it publishes the termination and ends its subscriptions.
AllocationPublisher publishes each granted renegotiation.
"""

import threading
from collections.abc import Callable

from lxml import etree

from vws.clock import Clock
from vws.soap import codec, faults
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import WORKSPACE_SERVICE, Endpoints, wsrf_operation
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace
from vws.wsrf import notification, properties
from vws.wsrf.notification import TERMINATION_TOPIC, NoCurrentMessage, NotificationProducer, Subscriptions
from vws.xmlns import NEGOTIABLE, TYPES, WSNT, WSNT_ACTION, qname

CURRENT_STATE = qname(TYPES, "currentState")
RESOURCE_ALLOCATION = qname(NEGOTIABLE, "ResourceAllocation")
TOPICS = (CURRENT_STATE, TERMINATION_TOPIC, RESOURCE_ALLOCATION)


def producer_key(workspace_id: int) -> str:
    return f"{WORKSPACE_SERVICE}/{workspace_id}"


def state_message(workspace: Workspace) -> notification.Message:
    """A currentState topic message: the property's new value."""
    return notification.value_change(codec.current_state(workspace))


class StatePublisher:
    """WorkspaceManager listener; runs on the committing thread, so it only queues."""

    def __init__(self, producer: NotificationProducer, clock: Clock) -> None:
        self._producer = producer
        self._clock = clock
        self._published: dict[int, str] = {}  # the last state each workspace's consumers were told
        self._guard = threading.Lock()

    def __call__(self, workspace: Workspace) -> None:
        if workspace.state.gone:
            with self._guard:
                self._published.pop(workspace.id, None)
            self._producer.end(producer_key(workspace.id), notification.termination(self._clock.now()))
            return
        with self._guard:
            if self._published.get(workspace.id) == workspace.state.wire:
                return  # a lease change or an internal step clients cannot see
            self._published[workspace.id] = workspace.state.wire
        self._producer.publish(producer_key(workspace.id), CURRENT_STATE, state_message(workspace))


def allocation_message(workspace: Workspace) -> notification.Message:
    """A ResourceAllocation topic message: what is granted now."""
    return notification.value_change(codec.resource_allocation(workspace))


class AllocationPublisher:
    """WorkspaceManager allocation listener: tells subscribers what a renegotiation granted."""

    def __init__(self, producer: NotificationProducer) -> None:
        self._producer = producer

    def __call__(self, workspace: Workspace) -> None:
        self._producer.publish(producer_key(workspace.id), RESOURCE_ALLOCATION, allocation_message(workspace))


class ProducerOperations:
    """The NotificationProducer operations and properties of the workspace port type."""

    def __init__(self, manager: WorkspaceManager, subscriptions: Subscriptions, endpoints: Endpoints) -> None:
        self._manager = manager
        self._subscriptions = subscriptions
        self._endpoints = endpoints

    def operations(self, workspace_id: Callable[[Call], int]) -> list[Operation]:
        """Subscribe and GetCurrentMessage, for a port type that reads the key with ``workspace_id``."""
        return [
            wsrf_operation(
                WSNT_ACTION,
                WSNT,
                "Subscribe",
                lambda call: self.subscribe(call, workspace_id(call)),
                faults.SUBSCRIBE,
            ),
            wsrf_operation(
                WSNT_ACTION,
                WSNT,
                "GetCurrentMessage",
                lambda call: self.current_message(call, workspace_id(call)),
                faults.GET_CURRENT_MESSAGE,
            ),
        ]

    def property_renderers(self) -> dict[str, properties.Renderer]:
        return notification.topic_property_renderers(TOPICS)

    def subscribe(self, call: Call, workspace_id: int) -> etree._Element:
        self._manager.get(call.caller, workspace_id)
        request = notification.parse_subscribe(call.body, TOPICS)
        subscription = self._subscriptions.add(
            call.caller.identity, producer_key(workspace_id), self._endpoints.workspace(workspace_id), request
        )
        return notification.subscribe_response(self._endpoints.subscription(subscription.key))

    def current_message(self, call: Call, workspace_id: int) -> etree._Element:
        workspace = self._manager.get(call.caller, workspace_id)
        topic = notification.supported_topic(call.body, TOPICS)
        if topic == TERMINATION_TOPIC:
            raise NoCurrentMessage("the workspace has not terminated")
        message = allocation_message if topic == RESOURCE_ALLOCATION else state_message
        return notification.current_message_response(message(workspace))
