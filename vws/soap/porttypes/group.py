"""The WorkspaceGroupService port type: start, shutdown and Destroy a whole group.

No resource properties, as in GT4. Each operation is applied to every remaining
member; a partial failure is the operation's fault, naming the members that failed.
"""

from collections.abc import Sequence

from lxml import etree

from vws.soap import faults
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import GROUP_KEY, GROUP_SERVICE, custom_operation, resource_key, wsrf_operation
from vws.soap.porttypes.workspace import shutdown_request
from vws.workspace.groups import Groups
from vws.wsrf import lifetime
from vws.xmlns import GROUP, WSRL, WSRL_ACTION, qname


class GroupPortType:
    service = GROUP_SERVICE

    def __init__(self, groups: Groups) -> None:
        self._groups = groups

    def operations(self) -> Sequence[Operation]:
        port = "WorkspaceGroupPortType"
        return [
            custom_operation(port, "start", qname(GROUP, "startWorkspaces"), self.start, faults.START),
            custom_operation(port, "shutdown", qname(GROUP, "shutdownWorkspaces"), self.shutdown, faults.SHUTDOWN),
            wsrf_operation(WSRL_ACTION, WSRL, "Destroy", self.destroy, faults.DESTROY),
        ]

    def start(self, call: Call) -> etree._Element:
        self._groups.start(call.caller, resource_key(call, GROUP_KEY))
        return etree.Element(qname(GROUP, "startWorkspacesResponse"))

    def shutdown(self, call: Call) -> etree._Element:
        self._groups.shutdown(call.caller, resource_key(call, GROUP_KEY), *shutdown_request(call.body))
        return etree.Element(qname(GROUP, "shutdownWorkspacesResponse"))

    def destroy(self, call: Call) -> etree._Element:
        self._groups.destroy(call.caller, resource_key(call, GROUP_KEY))
        return lifetime.destroy_response()
