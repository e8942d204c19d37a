"""What the client reads from and does to a workspace with hand-built WSRF messages.

Every function takes a ``Remote``: ``vws-client``'s Session, or a test's raw GT4
client. A workspace that is gone is Destroyed, the state the ResourceTermination
topic stands for.
"""

from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from vws.wsrf.addressing import EndpointReference
from vws.xmlns import JSDL, NEGOTIABLE, PROPAGATION, RESOURCES, TYPES, WSRL, WSRL_ACTION, WSRP, WSRP_ACTION, qname

DESTROYED = "Destroyed"
# The faults that say the resource named by an EPR does not exist (any more).
_UNKNOWN = frozenset({"ResourceUnknownFault", "WorkspaceUnknownFault"})


class Remote(Protocol):
    def raw(self, target: EndpointReference, action: str, body: etree._Element) -> etree._Element:
        """POST ``body`` to ``target`` and return the reply's payload; a SOAP fault raises."""

    def fault_name(self, error: Exception) -> str | None:
        """The local name of the fault ``error`` carries (None: not a SOAP fault)."""


def unknown(remote: Remote, error: Exception) -> bool:
    """Whether ``error`` says the target resource does not exist."""
    return remote.fault_name(error) in _UNKNOWN


@dataclass(frozen=True)
class CurrentState:
    """A workspace's currentState: the state, and why when it is Corrupted."""

    state: str
    reason: str | None = None

    @classmethod
    def from_element(cls, element: etree._Element) -> "CurrentState":
        """Read a ``types:currentState`` element (a property value or a notification's new value)."""
        reason = element.findtext(f"{{{TYPES}}}WorkspaceFault//{{*}}Description")
        return cls(element.findtext(qname(TYPES, "state")) or "?", reason.strip() if reason else None)

    def __str__(self) -> str:
        return f"{self.state}: {self.reason}" if self.reason else self.state


@dataclass(frozen=True)
class Copy:
    """An image copy in flight, from the vws ``propagation`` property."""

    node: str
    done: int  # bytes
    total: int  # bytes; 0 while the size is unknown

    @property
    def percent(self) -> int | None:
        return 100 * self.done // self.total if self.total else None

    def __str__(self) -> str:
        if self.total:
            return f"image to {self.node}: {self.percent}% of {self.total / 2**20:.0f} MB"
        return f"image to {self.node}: {self.done / 2**20:.0f} MB so far"


def get_property(remote: Remote, target: EndpointReference, name: str) -> list[etree._Element]:
    """The values of one resource property (GetResourceProperty)."""
    body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "p": etree.QName(name).namespace})
    body.text = f"p:{etree.QName(name).localname}"
    return list(remote.raw(target, WSRP_ACTION + "GetResourceProperty", body).iterchildren(name))


def current_state(remote: Remote, target: EndpointReference) -> CurrentState:
    (value,) = get_property(remote, target, qname(TYPES, "currentState"))
    return CurrentState.from_element(value)


def copies(remote: Remote, target: EndpointReference) -> list[Copy]:
    """The image copies to the workspace's node in flight (none once it is propagated)."""
    return [
        Copy(value.get("node", "?"), int(value.get("bytesDone", 0)), int(value.get("bytesTotal", 0)))
        for value in get_property(remote, target, qname(PROPAGATION, "propagation"))
    ]


def destroy(remote: Remote, target: EndpointReference) -> None:
    """WS-ResourceLifetime Destroy (a workspace, group, ensemble or subscription)."""
    remote.raw(target, WSRL_ACTION + "Destroy", etree.Element(qname(WSRL, "Destroy"), nsmap={"wsrl": WSRL}))


def renegotiate(
    remote: Remote,
    target: EndpointReference,
    *,
    memory_mb: int | None = None,
    vcpus: int | None = None,
    cpu_percent: int | None = None,
    at_next_start: bool = False,
) -> etree._Element:
    """SetResourceProperties with an Update of ResourceAllocation naming only what changes;
    the granted ResourceAllocation that follows."""
    value = etree.Element(qname(NEGOTIABLE, "ResourceAllocation"), nsmap={"neg": NEGOTIABLE, "jsdl": JSDL})
    for tag, amount in (
        (qname(NEGOTIABLE, "CPUPercentage"), cpu_percent),
        (qname(JSDL, "IndividualCPUCount"), vcpus),
        (qname(JSDL, "IndividualPhysicalMemory"), memory_mb),
    ):
        if amount is not None:
            etree.SubElement(etree.SubElement(value, tag), qname(JSDL, "Exact")).text = str(amount)
    if at_next_start:  # vws's own: what libvirt cannot apply live waits for the next start
        value.set(qname(RESOURCES, "atNextStart"), "true")
    body = etree.Element(qname(WSRP, "SetResourceProperties"), nsmap={"wsrp": WSRP})
    etree.SubElement(body, qname(WSRP, "Update")).append(value)
    remote.raw(target, WSRP_ACTION + "SetResourceProperties", body)
    (granted,) = get_property(remote, target, qname(NEGOTIABLE, "ResourceAllocation"))
    return granted


def availability(
    remote: Remote, factory: EndpointReference, memory_mb: int, duration: str, cpus: int = 1, count: int = 3
) -> list[tuple[str, str]]:
    """vws's availability question: (start, end) of the earliest windows a workspace would fit."""
    body = etree.Element(qname(RESOURCES, "availability"), nsmap={"vws-res": RESOURCES})
    for name, value in (("memory", memory_mb), ("cpus", cpus), ("duration", duration), ("count", count)):
        etree.SubElement(body, qname(RESOURCES, name)).text = str(value)
    reply = remote.raw(factory, f"{RESOURCES}/WorkspaceFactoryPortType/availabilityRequest", body)
    return [
        (window.findtext(qname(RESOURCES, "start")), window.findtext(qname(RESOURCES, "end")))
        for window in reply.iterchildren(qname(RESOURCES, "window"))
    ]
