"""WS-BaseFaults 2004/06 (draft 01): the detail every fault carries.

Timestamp, Originator (the resource's EPR where there is one), Description, and a
FaultCause chain, inside an element whose type extends wsbf:BaseFaultType.
"""

from datetime import datetime

from lxml import etree

from vws.clock import timestamp
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import WSBF, qname


def base_fault(
    tag: str,
    description: str,
    now: datetime,
    originator: EndpointReference | None = None,
    cause: str | None = None,
) -> etree._Element:
    fault = etree.Element(tag, nsmap={"wsbf": WSBF})
    etree.SubElement(fault, qname(WSBF, "Timestamp")).text = timestamp(now)
    if originator is not None:
        fault.append(originator.to_element(qname(WSBF, "Originator")))
    etree.SubElement(fault, qname(WSBF, "Description")).text = description
    if cause:
        nested = etree.SubElement(fault, qname(WSBF, "FaultCause"))
        etree.SubElement(nested, qname(WSBF, "Timestamp")).text = timestamp(now)
        etree.SubElement(nested, qname(WSBF, "Description")).text = cause
    return fault
