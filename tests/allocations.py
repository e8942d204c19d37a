"""Wire helpers for the issue #14 tests: ResourceAllocation bodies with CPU share and bandwidth,
and reading what libvirt was given."""

from datetime import datetime

from lxml import etree

from clients import resource
from tests.deployments import Gt4Remote
from tests.gt4wire import Gt4Client, created_eprs
from tests.resources import create, create_request
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import JSDL, NEGOTIABLE, RESOURCES, WORKSPACE, qname


def _range(tag: str, exact: int, upper: int | None = None) -> etree._Element:
    element = etree.Element(tag)
    if upper is not None:
        etree.SubElement(element, qname(JSDL, "UpperBoundedRange")).text = str(upper)
    etree.SubElement(element, qname(JSDL, "Exact")).text = str(exact)
    return element


def allocation_body(
    cpu_percent: int | None = None,
    vcpus: int = 1,
    memory_mb: int = 256,
    bandwidth: dict[str, tuple[int | None, int | None]] | None = None,
    **request: object,
) -> etree._Element:
    """A create body whose ResourceAllocation asks for a CPU share and per-NIC (in, out) bits/s."""
    body = create_request(memory_mb=memory_mb, **request)  # type: ignore[arg-type]
    allocation = body.find(f".//{{{NEGOTIABLE}}}ResourceAllocation")
    allocation.find(f"{{{JSDL}}}IndividualCPUCount/{{{JSDL}}}Exact").text = str(vcpus)
    if cpu_percent is not None:
        allocation.insert(0, _range(qname(NEGOTIABLE, "CPUPercentage"), cpu_percent))
    if bandwidth:
        holder = etree.SubElement(allocation, qname(NEGOTIABLE, "Bandwidth"))
        for name, (incoming, outgoing) in bandwidth.items():
            nic = etree.SubElement(holder, qname(NEGOTIABLE, "nic"))
            etree.SubElement(nic, qname(NEGOTIABLE, "name")).text = name
            for tag, rate in (("IncomingNetworkBandwidth", incoming), ("OutgoingNetworkBandwidth", outgoing)):
                if rate is not None:
                    nic.append(_range(qname(NEGOTIABLE, tag), rate))
    return body


def deploy(client: Gt4Client, body: etree._Element) -> EndpointReference:
    (epr,) = created_eprs(create(client, body))
    return epr


def domain(service: Service, epr: EndpointReference) -> etree._Element:
    """The workspace's domain as libvirt describes it now."""
    workspace = service.manager.get(SERVICE, int(epr.key(qname(WORKSPACE, "WorkspaceKey"))))
    return etree.fromstring(service.pool._driver(workspace.node).xml(workspace.domain))


def granted(client: Gt4Client, epr: EndpointReference) -> etree._Element:
    return client.get_property(epr, qname(NEGOTIABLE, "ResourceAllocation")).find(
        qname(NEGOTIABLE, "ResourceAllocation")
    )


def exact(allocation: etree._Element, path: str) -> str | None:
    """The Exact under ``path`` (``neg:``/``jsdl:`` prefixed steps) of a ResourceAllocation."""
    return allocation.findtext(path + "/jsdl:Exact", namespaces={"neg": NEGOTIABLE, "jsdl": JSDL})


def set_allocation(client: Gt4Client, epr: EndpointReference, **change: object) -> etree._Element:
    """vws-client's renegotiation (SetResourceProperties) over ``client``; the granted allocation."""
    return resource.renegotiate(Gt4Remote(client), epr, **change)  # type: ignore[arg-type]


def reservation_body(start: datetime, duration: str = "PT1H", memory_mb: int = 256, **request: object):
    """A create body asking for an advance reservation from ``start`` (vws-res:reservation)."""
    body = create_request(memory_mb=memory_mb, duration=duration, **request)  # type: ignore[arg-type]
    time = body.find(f".//{{{NEGOTIABLE}}}DeploymentTime")
    reservation = etree.SubElement(time, qname(RESOURCES, "reservation"), nsmap={"vws-res": RESOURCES})
    etree.SubElement(reservation, qname(RESOURCES, "start")).text = start.isoformat()
    return body
