"""WS-ResourceProperties ``SetResourceProperties`` on a workspace: renegotiating its allocation.

The one writable property is ``neg:ResourceAllocation``, changed by an ``Update`` that holds
the new value: each of memory, CPU count, CPUPercentage and Bandwidth it gives is asked for,
the rest stays as granted. The attribute ``vws-res:atNextStart="true"`` (vws's own namespace,
ignored by GT4 peers) asks that what libvirt cannot apply to the running guest be applied
from its next start rather than refused. Insert, Delete or another property are refused with
the faults WS-ResourceProperties declares.
"""

from collections.abc import Collection

from lxml import etree

from vws.errors import InvalidPropertyName, MalformedMessage, RequestDenied
from vws.soap import allocation
from vws.workspace.records import Workspace
from vws.workspace.renegotiation import AllocationChange
from vws.xmlns import NEGOTIABLE, RESOURCES, WSRP, qname

RESOURCE_ALLOCATION = qname(NEGOTIABLE, "ResourceAllocation")
AT_NEXT_START = qname(RESOURCES, "atNextStart")


class NotModifiable(RequestDenied):
    """A property or a change of it that the workspace does not allow (UnableToModifyResourcePropertyFault)."""


def requested_change(
    body: etree._Element, workspace: Workspace, published: Collection[str]
) -> tuple[AllocationChange, bool]:
    """(the change, whether it may wait for the next start) a SetResourceProperties body asks for;
    ``published``: the property names the workspace's document has."""
    components = list(body)
    if len(components) != 1:
        raise MalformedMessage("SetResourceProperties must hold exactly one Update of ResourceAllocation")
    (component,) = components
    kind = etree.QName(component).localname
    if component.tag not in {qname(WSRP, name) for name in ("Insert", "Update", "Delete")}:
        raise MalformedMessage(f"SetResourceProperties holds {kind!r}, which is not Insert, Update or Delete")
    if kind == "Delete":
        raise NotModifiable("no resource property of a workspace can be deleted")
    values = list(component)
    tags = {value.tag for value in values}
    if tags - {RESOURCE_ALLOCATION}:
        _refuse_other_properties(tags, published)
    if kind != "Update":
        raise NotModifiable("ResourceAllocation cannot be inserted, only updated")
    if len(values) != 1:
        raise MalformedMessage("an Update of ResourceAllocation holds exactly one ResourceAllocation")
    return _change(values[0], workspace), values[0].get(AT_NEXT_START, "false").strip() in ("true", "1")


def _refuse_other_properties(names: set[str], published: Collection[str]) -> None:
    unknown = sorted(name for name in names if name not in published)
    if unknown:
        raise InvalidPropertyName(f"the workspace has no resource property {', '.join(unknown)}")
    raise NotModifiable("of the workspace's resource properties only ResourceAllocation can be set")


def _change(value: etree._Element, workspace: Workspace) -> AllocationChange:
    nics = {nic.name for nic in workspace.request.machine.nics}
    shaped = value.find(qname(NEGOTIABLE, "Bandwidth"))
    return AllocationChange(
        memory_mb=allocation.memory_mb(value),
        vcpus=allocation.vcpus(value),
        cpu_percent=allocation.cpu_percent(value),
        bandwidth=None if shaped is None else allocation.bandwidth(value, nics),
    )


def response() -> etree._Element:
    return etree.Element(qname(WSRP, "SetResourcePropertiesResponse"), nsmap={"wsrp": WSRP})
