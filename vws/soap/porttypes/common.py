"""What every port type shares: operation builders, service names, endpoint references."""

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from vws.soap import faults
from vws.soap.dispatch import Call, Handler, Operation
from vws.wsrf import properties
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import WORKSPACE, WSRP, WSRP_ACTION, qname

WORKSPACE_KEY = qname(WORKSPACE, "WorkspaceKey")
FACTORY_SERVICE = "WorkspaceFactoryService"
WORKSPACE_SERVICE = "WorkspaceService"

DocumentSource = Callable[[Call], properties.PropertyDocument]


def custom_operation(port_type: str, name: str, request: str, handler: Handler, table: faults.FaultTable) -> Operation:
    """An operation of a workspace port type; GT4 actions are <tns>/<PortType>/<op>Request|Response."""
    prefix = f"{etree.QName(request).namespace}/{port_type}/{name}"
    return Operation(name, request, prefix + "Request", prefix + "Response", handler, table)


def wsrf_operation(
    action_base: str, namespace: str, name: str, handler: Handler, table: faults.FaultTable
) -> Operation:
    action = action_base + name
    return Operation(name, qname(namespace, name), action, action + "Response", handler, table)


def property_operations(document: DocumentSource) -> list[Operation]:
    """GetResourceProperty, GetMultipleResourceProperties and QueryResourceProperties."""
    return [
        wsrf_operation(
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
