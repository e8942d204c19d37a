"""The GT4 ``neg:ResourceAllocation`` element <-> what a workspace is granted.

Read in a create request and in a SetResourceProperties Update (renegotiation); written
as the workspace's ResourceAllocation resource property, which says what was granted.
Units are JSDL's: memory in MB, CPUs as a count, ``CPUPercentage`` in percent of one host
CPU per vCPU, and network bandwidth in bits per second, which libvirt shapes in KiB/s: a
bandwidth is granted rounded up to whole KiB/s, and the property shows what was granted.
"""

import re

from lxml import etree

from vws.errors import InvalidMetadata
from vws.workspace.request import MachineRequest, NicBandwidth, Rate
from vws.xmlns import JSDL, NEGOTIABLE, qname

BITS_PER_KIB = 8 * 1024
MAX_QUANTITY = 2**31 - 1  # MB, CPUs, KiB/s: far beyond any node, well inside every integer it meets

# Numbers in ASCII digits, in the lexical forms of their schema types: float() and int()
# alone also read '١٢٨', '1_000', ' inf' and 5000-digit strings.
XSD_DOUBLE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
XSD_INTEGER = re.compile(r"[+-]?[0-9]+")


def quantity(text: str, what: str, maximum: int = MAX_QUANTITY) -> int:
    """A JSDL Exact (an xsd:double) that must be a whole number from 1 to ``maximum``."""
    return whole(text, what, XSD_DOUBLE, maximum)


def whole(text: str, what: str, lexical: re.Pattern[str], maximum: int) -> int:
    if not lexical.fullmatch(text):
        raise InvalidMetadata(f"{what} must be a number, not {text[:40]!r}")
    value = float(text)
    if not value.is_integer() or not 1 <= value <= maximum:
        raise InvalidMetadata(f"{what} must be a whole number from 1 to {maximum}, not {text[:40]!r}")
    return int(value)


def _exact(parent: etree._Element, name: str, namespace: str = JSDL) -> str | None:
    """The Exact of the RangeValue ``name`` under ``parent``; None when the element is absent."""
    element = parent.find(qname(namespace, name))
    if element is None:
        return None
    text = element.findtext(qname(JSDL, "Exact"))
    if text is None or not text.strip():
        raise InvalidMetadata(f"{name} must be given as an Exact value")
    return text.strip()


# ---- reading --------------------------------------------------------------------------------


def memory_mb(allocation: etree._Element) -> int | None:
    text = _exact(allocation, "IndividualPhysicalMemory")
    return None if text is None else quantity(text, "IndividualPhysicalMemory")


def vcpus(allocation: etree._Element) -> int | None:
    text = _exact(allocation, "IndividualCPUCount")
    return None if text is None else quantity(text, "IndividualCPUCount")


def cpu_percent(allocation: etree._Element) -> int | None:
    """``CPUPercentage``: of one host CPU, for each vCPU (so 100 is no cap at all)."""
    text = _exact(allocation, "CPUPercentage", NEGOTIABLE)
    return None if text is None else quantity(text, "CPUPercentage", 100)


def bandwidth(allocation: etree._Element, nic_names: set[str]) -> tuple[NicBandwidth, ...]:
    """Per-NIC shaping; each nic must name a NIC of the workspace (``nic_names``)."""
    holder = allocation.find(qname(NEGOTIABLE, "Bandwidth"))
    if holder is None:
        return ()
    shaped = []
    for nic in holder.findall(qname(NEGOTIABLE, "nic")):
        name = (nic.findtext(qname(NEGOTIABLE, "name")) or "").strip()
        if name not in nic_names:
            raise InvalidMetadata(f"Bandwidth names nic {name!r}, which the workspace does not have")
        inbound = _rate(nic, "IncomingNetworkBandwidth")
        outbound = _rate(nic, "OutgoingNetworkBandwidth")
        if inbound or outbound:
            shaped.append(NicBandwidth(name, inbound, outbound))
    return tuple(shaped)


def _rate(nic: etree._Element, name: str) -> Rate | None:
    """Exact is the average rate; an UpperBoundedRange, the peak a burst of one second may reach."""
    element = nic.find(qname(NEGOTIABLE, name))
    if element is None:
        return None
    exact = element.findtext(qname(JSDL, "Exact"))
    upper = element.findtext(qname(JSDL, "UpperBoundedRange"))
    if exact is None:
        raise InvalidMetadata(f"{name} must give an Exact rate in bits per second")
    average = _kibytes(quantity(exact.strip(), name))
    peak = None if upper is None else _kibytes(quantity(upper.strip(), name))
    if peak is not None and peak < average:
        raise InvalidMetadata(f"{name}: the UpperBoundedRange (peak) is below the Exact (average) rate")
    return Rate(average, peak, peak)


def _kibytes(bits_per_second: int) -> int:
    return -(-bits_per_second // BITS_PER_KIB)


# ---- writing --------------------------------------------------------------------------------


def _element(tag: str, text: str | None = None, *children: etree._Element) -> etree._Element:
    element = etree.Element(tag)
    element.text = text
    element.extend(children)
    return element


def _range(tag: str, value: int, upper: int | None = None) -> etree._Element:
    children = [] if upper is None else [_element(qname(JSDL, "UpperBoundedRange"), str(upper))]
    return _element(tag, None, *children, _element(qname(JSDL, "Exact"), str(value)))


def resource_allocation(machine: MachineRequest, tag: str = qname(NEGOTIABLE, "ResourceAllocation")) -> etree._Element:
    """What was granted, in the schema's order: CPUPercentage, CPUs, memory, Bandwidth."""
    element = _element(tag)
    if machine.cpu_percent is not None:
        element.append(_range(qname(NEGOTIABLE, "CPUPercentage"), machine.cpu_percent))
    element.append(_range(qname(JSDL, "IndividualCPUCount"), machine.vcpus))
    element.append(_range(qname(JSDL, "IndividualPhysicalMemory"), machine.memory_mb))
    if machine.bandwidth:
        element.append(_element(qname(NEGOTIABLE, "Bandwidth"), None, *map(_nic_bandwidth, machine.bandwidth)))
    return element


def _nic_bandwidth(shaping: NicBandwidth) -> etree._Element:
    nic = _element(qname(NEGOTIABLE, "nic"), None, _element(qname(NEGOTIABLE, "name"), shaping.nic))
    for name, rate in (("IncomingNetworkBandwidth", shaping.inbound), ("OutgoingNetworkBandwidth", shaping.outbound)):
        if rate is not None:
            upper = None if rate.peak_kbytes is None else rate.peak_kbytes * BITS_PER_KIB
            nic.append(_range(qname(NEGOTIABLE, name), rate.average_kbytes * BITS_PER_KIB, upper))
    return nic
