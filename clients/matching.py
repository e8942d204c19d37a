"""``vws-client match``: whether an appliance can run at a factory, and if not, why.

Reads the appliance's requirements from its metadata (CPU architecture, VMM, the network
pools its NICs name) and, with a deployment request, its memory and CPUs; reads what each
factory's pool offers (its ``app:offer`` property, one entry per kind of node); and
applies the very rules the service applies at create (``vws.matching``).
"""

from pathlib import Path

from lxml import etree

from clients import resource
from vws.errors import VwsError
from vws.matching import Offer, PoolOffer, Requirements, Vmm, check, runs
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import APPLIANCES, DEFINITION, JSDL, LOGISTICS, NEGOTIABLE, qname
from vws.xmlparse import parse


def requirements(metadata: Path, request: Path | None = None) -> Requirements:
    """What the appliance in ``metadata`` (and ``request``) asks of a node."""
    document = _read(metadata)
    required = document.find(f".//{{{DEFINITION}}}requirements")
    architecture = None if required is None else required.findtext(f".//{{{JSDL}}}CPUArchitectureName")
    vmm = None if required is None else required.find(qname(DEFINITION, "VMM"))
    memory, cpus = _allocation(_read(request)) if request is not None else (0, 0)
    return Requirements(
        architecture=architecture.strip() if architecture else None,
        vmm=None if vmm is None else _vmm(vmm),
        memory_mb=memory,
        cpus=cpus,
        networks=frozenset((element.text or "").strip() for element in document.iter(qname(LOGISTICS, "association"))),
    )


def offers(remote: resource.Remote, factory: EndpointReference) -> PoolOffer:
    """What the factory's pool can host: each kind of node, and the VMMs every node answers to."""
    (offer,) = resource.get_property(remote, factory, qname(APPLIANCES, "offer"))
    return PoolOffer(
        tuple(_offer(kind) for kind in offer.iter(qname(APPLIANCES, "kind"))),
        tuple(_vmm(vmm, APPLIANCES) for vmm in offer.iter(qname(APPLIANCES, "legacyVmm"))),
    )


def verdict(wanted: Requirements, pool: PoolOffer) -> str | None:
    """None when the appliance can run in ``pool``; else why not, as the service would say it."""
    try:
        check(wanted, pool.kinds, pool.legacy)
    except VwsError as refusal:
        return refusal.description
    return None


def hosting(wanted: Requirements, pool: PoolOffer) -> list[Offer]:
    """The kinds of node that would run the appliance."""
    return [offer for offer in pool.kinds if runs(wanted, offer, pool.legacy)]


def describe(offer: Offer) -> str:
    vmms = ", ".join(str(vmm) for vmm in offer.vmms)
    size = f"up to {offer.memory_mb} MB, {offer.cpus} CPUs"
    return f"{'/'.join(offer.architectures)} under {vmms}: {offer.nodes} node(s), {size}"


def _read(path: Path) -> etree._Element:
    try:
        return parse(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except VwsError as exc:
        raise ValueError(f"{path}: {exc.description}") from None


def _vmm(element: etree._Element, namespace: str = DEFINITION) -> Vmm:
    return Vmm((element.findtext(qname(namespace, "type")) or "").strip(), tuple(_texts(element, namespace, "version")))


def _allocation(request: etree._Element) -> tuple[int, int]:
    allocation = request.find(f".//{{{NEGOTIABLE}}}ResourceAllocation")
    if allocation is None:
        return 0, 0

    def exact(name: str) -> int:
        text = allocation.findtext(f"{{{JSDL}}}{name}/{{{JSDL}}}Exact")
        return int(float(text)) if text else 0

    return exact("IndividualPhysicalMemory"), exact("IndividualCPUCount")


def _offer(kind: etree._Element) -> Offer:
    return Offer(
        architectures=tuple(_texts(kind, APPLIANCES, "architecture")),
        vmms=tuple(_vmm(vmm, APPLIANCES) for vmm in kind.findall(qname(APPLIANCES, "vmm"))),
        memory_mb=int(kind.findtext(qname(APPLIANCES, "memoryMB")) or 0),
        cpus=int(kind.findtext(qname(APPLIANCES, "cpus")) or 0),
        networks=frozenset(_texts(kind, APPLIANCES, "association")),
        nodes=int(kind.get("nodes") or 1),
    )


def _texts(element: etree._Element, namespace: str, name: str) -> list[str]:
    return [text for child in element.findall(qname(namespace, name)) if (text := (child.text or "").strip())]


def listed(appliance: etree._Element) -> str:
    """One catalogue entry on a line: how to name it, architecture, attributes, producer."""
    attributes = " ".join(
        f"{element.get('name')}={(element.text or '').strip()}"
        for element in appliance.iter(qname(APPLIANCES, "attribute"))
    )
    architecture = appliance.findtext(qname(APPLIANCES, "architecture")) or "any"
    producer = appliance.findtext(qname(APPLIANCES, "producer")) or "?"
    return f"{appliance.get('location')}  {architecture}  {attributes}  (signed by {producer})"
