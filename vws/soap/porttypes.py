"""The workspace port types: the factory and the per-workspace service.

Each handler reads the verified body, calls the WorkspaceManager, and renders the
response element the WSDL declares. Resource properties are rendered fresh per
request from the committed state, so they are never stale.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from lxml import etree

from vws.clock import Clock
from vws.errors import MalformedMessage, UnknownResource
from vws.soap import codec, faults
from vws.soap.dispatch import Call, Operation
from vws.workspace.manager import Workspace, WorkspaceManager
from vws.workspace.states import Op
from vws.wsrf import lifetime, properties
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import (
    DEFINITION,
    JSDL,
    LOGISTICS,
    NEGOTIABLE,
    TYPES,
    WORKSPACE,
    WSRL,
    WSRL_ACTION,
    WSRP,
    WSRP_ACTION,
    XSI,
    qname,
)

WORKSPACE_KEY = qname(WORKSPACE, "WorkspaceKey")
FACTORY_SERVICE = "WorkspaceFactoryService"
WORKSPACE_SERVICE = "WorkspaceService"

DocumentSource = Callable[[Call], properties.PropertyDocument]


def custom_operation(port_type: str, name: str, request: str, handler, table: faults.FaultTable) -> Operation:  # type: ignore[no-untyped-def]
    """An operation of a workspace port type; GT4 actions are <tns>/<PortType>/<op>Request|Response."""
    prefix = f"{WORKSPACE}/{port_type}/{name}"
    return Operation(name, request, prefix + "Request", prefix + "Response", handler, table)


def _wsrf_operation(action_base: str, namespace: str, name: str, handler, table: faults.FaultTable) -> Operation:  # type: ignore[no-untyped-def]
    action = action_base + name
    return Operation(name, qname(namespace, name), action, action + "Response", handler, table)


def property_operations(document: DocumentSource) -> list[Operation]:
    """GetResourceProperty, GetMultipleResourceProperties and QueryResourceProperties."""
    return [
        _wsrf_operation(
            WSRP_ACTION, WSRP, name, lambda call, read=read: read(document(call), call.body), faults.PROPERTIES
        )
        for name, read in (
            ("GetResourceProperty", properties.get_property),
            ("GetMultipleResourceProperties", properties.get_multiple),
            ("QueryResourceProperties", properties.query),
        )
    ]


@dataclass(frozen=True)
class Endpoints:
    """Where the services live, so EPRs carry addresses clients can reach."""

    base_url: str  # ends with /wsrf/services/

    def workspace(self, workspace_id: int) -> EndpointReference:
        return EndpointReference(self.base_url + WORKSPACE_SERVICE, (key_property(WORKSPACE_KEY, str(workspace_id)),))


class FactoryPortType:
    service = FACTORY_SERVICE

    def __init__(
        self, manager: WorkspaceManager, endpoints: Endpoints, clock: Clock, policy_default: timedelta,
        policy_maximum: timedelta, associations: Callable[[], list[str]],
    ) -> None:
        self._manager = manager
        self._endpoints = endpoints
        self._clock = clock
        self._default = policy_default
        self._maximum = policy_maximum
        self._associations = associations

    def operations(self) -> Sequence[Operation]:
        return [
            custom_operation("WorkspaceFactoryPortType", "create", qname(WORKSPACE, "create"), self.create, faults.CREATE),
            *property_operations(self._document),
        ]

    def create(self, call: Call) -> etree._Element:
        created = self._manager.create(call.caller, codec.parse_create(call.body))
        response = etree.Element(qname(WORKSPACE, "createResponse"), nsmap={"types": TYPES})
        response.extend(self._created(workspace) for workspace in created)
        for name in ("GroupEPR", "EnsembleEPR", "ContextEPR"):
            etree.SubElement(response, qname(TYPES, name)).set(qname(XSI, "nil"), "true")
        return response

    def _created(self, workspace: Workspace) -> etree._Element:
        created = etree.Element(qname(TYPES, "CreatedWorkspace"))
        created.append(self._endpoints.workspace(workspace.id).to_element(qname(TYPES, "epr")))
        created.append(codec.schedule(workspace))
        created.append(codec.networking(workspace.leases))
        return created

    def _document(self, call: Call) -> properties.PropertyDocument:
        root = etree.Element(qname(WORKSPACE, "FactoryRPSet"), nsmap={"types": TYPES, "jsdl": JSDL, "def": DEFINITION})
        etree.SubElement(root, qname(TYPES, "DefaultRunningTime")).text = codec.format_duration(self._default)
        etree.SubElement(root, qname(TYPES, "MaximumRunningTime")).text = codec.format_duration(self._maximum)
        etree.SubElement(root, qname(JSDL, "CPUArchitectureName")).text = "x86_64"
        associations = etree.SubElement(root, qname(TYPES, "Associations"))
        for name in self._associations():
            etree.SubElement(associations, qname(TYPES, "association")).text = name
        return properties.PropertyDocument(root, _FACTORY_PROPERTIES)


_FACTORY_PROPERTIES = frozenset(
    {
        qname(TYPES, "DefaultRunningTime"),
        qname(TYPES, "MaximumRunningTime"),
        qname(JSDL, "CPUArchitectureName"),
        qname(DEFINITION, "VMM"),
        qname(TYPES, "Associations"),
    }
)

SHUTDOWN_TYPES = {
    "Normal": Op.SHUTDOWN,
    "Pause": Op.PAUSE,
    "Reboot": Op.REBOOT,
    "ReadyForTransport": Op.READY_FOR_TRANSPORT,
    "Serialize": Op.SERIALIZE,
}


class WorkspacePortType:
    service = WORKSPACE_SERVICE

    def __init__(self, manager: WorkspaceManager, clock: Clock) -> None:
        self._manager = manager
        self._clock = clock

    def operations(self) -> Sequence[Operation]:
        port = "WorkspacePortType"
        return [
            custom_operation(port, "start", qname(WORKSPACE, "startWorkspace"), self.start, faults.START),
            custom_operation(port, "shutdown", qname(WORKSPACE, "shutdownWorkspace"), self.shutdown, faults.SHUTDOWN),
            *property_operations(self._document),
            _wsrf_operation(WSRL_ACTION, WSRL, "Destroy", self.destroy, faults.DESTROY),
            _wsrf_operation(WSRL_ACTION, WSRL, "SetTerminationTime", self.set_termination_time, faults.SET_TERMINATION_TIME),
        ]

    def _workspace_id(self, call: Call) -> int:
        key = call.key(WORKSPACE_KEY)
        if key is None or not key.isdigit():
            raise UnknownResource(f"the request carries no valid WorkspaceKey header (got {key!r})")
        return int(key)

    def start(self, call: Call) -> etree._Element:
        self._manager.start(call.caller, self._workspace_id(call))
        return etree.Element(qname(WORKSPACE, "startWorkspaceResponse"))

    def shutdown(self, call: Call) -> etree._Element:
        kind = call.body.findtext(qname(TYPES, "shutdownType"), "Normal").strip()
        if kind == "Trash":
            raise MalformedMessage("shutdownType Trash is not an operation: use WS-ResourceLifetime Destroy")
        if kind not in SHUTDOWN_TYPES:
            raise MalformedMessage(f"unknown shutdownType {kind!r}")
        self._manager.shutdown(call.caller, self._workspace_id(call), SHUTDOWN_TYPES[kind])
        return etree.Element(qname(WORKSPACE, "shutdownWorkspaceResponse"))

    def destroy(self, call: Call) -> etree._Element:
        self._manager.destroy(call.caller, self._workspace_id(call))
        return lifetime.destroy_response()

    def set_termination_time(self, call: Call) -> etree._Element:
        requested = lifetime.requested_termination_time(call.body)
        workspace = self._manager.set_termination_time(call.caller, self._workspace_id(call), requested)
        return lifetime.set_termination_time_response(workspace.termination_time, self._clock.now())

    def _document(self, call: Call) -> properties.PropertyDocument:
        workspace = self._manager.get(call.caller, self._workspace_id(call))
        now = self._clock.now()
        root = etree.Element(qname(WORKSPACE, "ServiceRPSet"), nsmap=codec.NSMAP)
        root.extend(
            [
                codec.current_state(workspace, now),
                codec.schedule(workspace),
                codec.resource_allocation(workspace),
                codec.logistics(workspace),
                *lifetime.time_properties(workspace.termination_time, now),
            ]
        )
        return properties.PropertyDocument(root, _WORKSPACE_PROPERTIES)


_WORKSPACE_PROPERTIES = frozenset(
    {
        qname(TYPES, "currentState"),
        qname(TYPES, "schedule"),
        qname(NEGOTIABLE, "ResourceAllocation"),
        qname(LOGISTICS, "logistics"),
        qname(WSRL, "CurrentTime"),
        qname(WSRL, "TerminationTime"),
    }
)
