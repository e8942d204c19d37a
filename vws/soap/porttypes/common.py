"""What every port type shares: operation builders, service names, endpoint references."""

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from vws.errors import UnknownResource
from vws.soap import faults
from vws.soap.dispatch import Call, Handler, Operation
from vws.wsrf import properties
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import CTX, ENSEMBLE, GROUP, GT4_CORE, WORKSPACE, WSRP, WSRP_ACTION, qname

WORKSPACE_KEY = qname(WORKSPACE, "WorkspaceKey")
GROUP_KEY = qname(GROUP, "WorkspaceGroupKey")
ENSEMBLE_KEY = qname(ENSEMBLE, "WorkspaceEnsembleKey")
# GT4 ws-core's subscription resource key.
SUBSCRIPTION_KEY = qname(GT4_CORE, "SubscriptionKey")
CONTEXT_KEY = qname(CTX, "NimbusContextBrokerKey")
RESOURCE_KEYS = (
    WORKSPACE_KEY,
    GROUP_KEY,
    ENSEMBLE_KEY,
    SUBSCRIPTION_KEY,
    CONTEXT_KEY,
)  # the reference property naming each
FACTORY_SERVICE = "WorkspaceFactoryService"
WORKSPACE_SERVICE = "WorkspaceService"
GROUP_SERVICE = "WorkspaceGroupService"
ENSEMBLE_SERVICE = "WorkspaceEnsembleService"
STATUS_SERVICE = "WorkspaceStatusService"
SUBSCRIPTION_SERVICE = "SubscriptionManagerService"
CATALOG_SERVICE = "ApplianceCatalogService"  # vws's own: the appliances a user may deploy
CONTEXT_SERVICE = "NimbusContextBroker"

DocumentSource = Callable[[Call], properties.PropertyDocument]


def custom_operation(port_type: str, name: str, request: str, handler: Handler, table: faults.FaultTable) -> Operation:
    """An operation of a workspace port type; GT4 actions are <tns>/<PortType>/<op>Request|Response."""
    prefix = f"{etree.QName(request).namespace}/{port_type}/{name}"
    return Operation(name, request, prefix + "Request", prefix + "Response", handler, table)


def wsrf_operation(
    action_base: str,
    namespace: str,
    name: str,
    handler: Handler,
    table: faults.FaultTable,
    changes_state: bool = True,
) -> Operation:
    action = action_base + name
    return Operation(name, qname(namespace, name), action, action + "Response", handler, table, changes_state)


def property_operations(document: DocumentSource) -> list[Operation]:
    """GetResourceProperty, GetMultipleResourceProperties and QueryResourceProperties: reads."""
    return [
        wsrf_operation(
            WSRP_ACTION, WSRP, name, lambda call, read=read: read(document(call), call.body), table, changes_state=False
        )
        for name, read, table in (
            ("GetResourceProperty", properties.get_property, faults.PROPERTIES),
            ("GetMultipleResourceProperties", properties.get_multiple, faults.PROPERTIES),
            ("QueryResourceProperties", properties.query, faults.QUERY),
        )
    ]


@dataclass(frozen=True)
class Endpoints:
    """Where the services live, so EPRs carry addresses clients can reach."""

    base_url: str  # ends with /wsrf/services/
    agents: str = ""  # where context agents report, when guests reach the service by another address

    def workspace(self, workspace_id: int) -> EndpointReference:
        return self._resource(WORKSPACE_SERVICE, WORKSPACE_KEY, str(workspace_id))

    def group(self, key: str) -> EndpointReference:
        return self._resource(GROUP_SERVICE, GROUP_KEY, key)

    def ensemble(self, key: str) -> EndpointReference:
        return self._resource(ENSEMBLE_SERVICE, ENSEMBLE_KEY, key)

    def subscription(self, key: str) -> EndpointReference:
        return self._resource(SUBSCRIPTION_SERVICE, SUBSCRIPTION_KEY, key)

    def context(self, key: str) -> EndpointReference:
        return self._resource(CONTEXT_SERVICE, CONTEXT_KEY, key)

    @property
    def agent_url(self) -> str:
        """Where context agents report (vws.soap.ctxagent): as configured, else beside /wsrf/services/."""
        return self.agents or self.base_url.removesuffix("/wsrf/services/") + "/ctx/"

    def _resource(self, service: str, key_tag: str, key: str) -> EndpointReference:
        return EndpointReference(self.base_url + service, (key_property(key_tag, key),))


def resource_key(call: Call, tag: str) -> str:
    """The key a resource's EPR carried, or UnknownResource when the header is missing."""
    key = call.key(tag)
    if not key:
        raise UnknownResource(f"the request carries no {etree.QName(tag).localname} header")
    return key
