"""The WorkspaceService port type: one workspace's operations and resource properties."""

from collections.abc import Sequence

from lxml import etree

from vws.clock import Clock
from vws.errors import MalformedMessage, UnknownResource
from vws.soap import codec, faults, renegotiation
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import (
    WORKSPACE_KEY,
    WORKSPACE_SERVICE,
    custom_operation,
    property_operations,
    wsrf_operation,
)
from vws.soap.porttypes.producer import ProducerOperations
from vws.workspace.manager import WorkspaceManager
from vws.workspace.states import Op
from vws.wsrf import lifetime, properties
from vws.wsrf.addressing import integer_key
from vws.xmlns import (
    LOGISTICS,
    NEGOTIABLE,
    PROPAGATION,
    TYPES,
    WORKSPACE,
    WSNT,
    WSRL,
    WSRL_ACTION,
    WSRP,
    WSRP_ACTION,
    qname,
)

SHUTDOWN_TYPES = {
    "Normal": Op.SHUTDOWN,
    "Pause": Op.PAUSE,
    "Reboot": Op.REBOOT,
    "ReadyForTransport": Op.READY_FOR_TRANSPORT,
    "Serialize": Op.SERIALIZE,
}


def shutdown_request(body: etree._Element) -> tuple[Op, str | None]:
    """What a WorkspaceShutdownRequest_Type body asks: the operation its shutdownType names,
    and the save target its PostShutdown gives (only with ReadyForTransport)."""
    kind = body.findtext(qname(TYPES, "shutdownType"), "Normal").strip()
    if kind == "Trash":
        raise MalformedMessage("shutdownType Trash is not an operation: use WS-ResourceLifetime Destroy")
    if kind not in SHUTDOWN_TYPES:
        raise MalformedMessage(f"unknown shutdownType {kind!r}")
    post = body.find(qname(NEGOTIABLE, "PostShutdown"))
    if post is None:
        return SHUTDOWN_TYPES[kind], None
    if kind != "ReadyForTransport":
        raise MalformedMessage("PostShutdown goes only with shutdownType ReadyForTransport")
    target = (post.findtext(qname(NEGOTIABLE, "rootPartitionUnpropagationTarget")) or "").strip()
    if not target:
        raise MalformedMessage("PostShutdown needs a rootPartitionUnpropagationTarget")
    return Op.READY_FOR_TRANSPORT, target


class WorkspacePortType:
    service = WORKSPACE_SERVICE

    def __init__(self, manager: WorkspaceManager, clock: Clock, producer: ProducerOperations) -> None:
        self._manager = manager
        self._clock = clock
        self._producer = producer  # the NotificationProducer half: Subscribe, GetCurrentMessage

    def operations(self) -> Sequence[Operation]:
        port = "WorkspacePortType"
        return [
            custom_operation(port, "start", qname(WORKSPACE, "startWorkspace"), self.start, faults.START),
            custom_operation(port, "shutdown", qname(WORKSPACE, "shutdownWorkspace"), self.shutdown, faults.SHUTDOWN),
            *property_operations(self._document),
            wsrf_operation(WSRP_ACTION, WSRP, "SetResourceProperties", self.set_properties, faults.SET_PROPERTIES),
            wsrf_operation(WSRL_ACTION, WSRL, "Destroy", self.destroy, faults.DESTROY),
            wsrf_operation(
                WSRL_ACTION, WSRL, "SetTerminationTime", self.set_termination_time, faults.SET_TERMINATION_TIME
            ),
            *self._producer.operations(self._workspace_id),
        ]

    def _workspace_id(self, call: Call) -> int:
        key = call.key(WORKSPACE_KEY)
        workspace_id = integer_key(key)
        if workspace_id is None:
            raise UnknownResource(f"the request carries no valid WorkspaceKey header (got {key!r:.40})")
        return workspace_id

    def start(self, call: Call) -> etree._Element:
        self._manager.start(call.caller, self._workspace_id(call))
        return etree.Element(qname(WORKSPACE, "startWorkspaceResponse"))

    def shutdown(self, call: Call) -> etree._Element:
        self._manager.shutdown(call.caller, self._workspace_id(call), *shutdown_request(call.body))
        return etree.Element(qname(WORKSPACE, "shutdownWorkspaceResponse"))

    def destroy(self, call: Call) -> etree._Element:
        self._manager.destroy(call.caller, self._workspace_id(call))
        return lifetime.destroy_response()

    def set_termination_time(self, call: Call) -> etree._Element:
        requested = lifetime.requested_termination_time(call.body)
        workspace = self._manager.set_termination_time(call.caller, self._workspace_id(call), requested)
        return lifetime.set_termination_time_response(workspace.termination_time, self._clock.now())

    def set_properties(self, call: Call) -> etree._Element:
        """Renegotiation: an Update of ResourceAllocation (see vws.soap.renegotiation)."""
        document = self._document(call)
        workspace = self._manager.get(call.caller, self._workspace_id(call))
        published = {*document.renderers, *document.by_name}
        change, at_next_start = renegotiation.requested_change(call.body, workspace, published)
        self._manager.renegotiate(call.caller, workspace.id, change, at_next_start=at_next_start)
        return renegotiation.response()

    def _document(self, call: Call) -> properties.PropertyDocument:
        workspace = self._manager.get(call.caller, self._workspace_id(call))
        now = self._clock.now()
        current, termination = lifetime.time_properties(workspace.termination_time, now)
        topics = self._producer.property_renderers()
        # In the order of Nimbus's ServiceRPSet, which stock clients read as a sequence.
        renderers = {
            qname(TYPES, "currentState"): lambda: [codec.current_state(workspace)],
            qname(TYPES, "schedule"): lambda: [codec.schedule(workspace)],
            qname(NEGOTIABLE, "ResourceAllocation"): lambda: [codec.resource_allocation(workspace)],
            qname(LOGISTICS, "logistics"): lambda: [codec.logistics(workspace)],
            qname(WSNT, "FixedTopicSet"): topics[qname(WSNT, "FixedTopicSet")],
            qname(WSNT, "Topic"): topics[qname(WSNT, "Topic")],
            qname(WSRL, "TerminationTime"): lambda: [termination],
            qname(WSNT, "TopicExpressionDialects"): topics[qname(WSNT, "TopicExpressionDialects")],
            qname(WSRL, "CurrentTime"): lambda: [current],
        }
        propagation = {
            qname(PROPAGATION, "propagation"): lambda: [
                codec.propagation(progress) for progress in [self._manager.propagation(workspace.id)] if progress
            ]
        }
        return properties.PropertyDocument(qname(WORKSPACE, "ServiceRPSet"), renderers, codec.NSMAP, propagation)
