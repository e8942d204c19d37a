"""vws's own factory operation ``vws-res:availability``: the earliest windows a request would fit.

Asks with a memory size, an optional CPU count, a duration and an optional earliest start;
answers up to ``count`` (default 3, at most 10) windows, earliest first, that a node can
hold it for alongside every admitted reservation and lease: what ``vws-client availability``
prints before a ``deploy --start-at``.
"""

from datetime import datetime, timedelta

from lxml import etree

from vws.clock import timestamp
from vws.errors import InvalidMetadata
from vws.soap import allocation
from vws.soap.codec import parse_duration
from vws.workspace.request import MachineRequest
from vws.workspace.reservations import Window
from vws.xmlns import RESOURCES, qname

MAX_WINDOWS = 10


def question(body: etree._Element) -> tuple[MachineRequest, timedelta, datetime | None, int]:
    """(the machine, its duration, the earliest start or None, how many windows) asked about."""

    def text(name: str) -> str | None:
        value = body.findtext(qname(RESOURCES, name))
        return None if value is None or not value.strip() else value.strip()

    memory = text("memory")
    duration = text("duration")
    if memory is None or duration is None:
        raise InvalidMetadata("availability needs a memory (MB) and a duration")
    machine = MachineRequest(
        memory_mb=allocation.quantity(memory, "memory"), vcpus=allocation.quantity(text("cpus") or "1", "cpus")
    )
    start = text("from")
    try:
        earliest = None if start is None else datetime.fromisoformat(start)
    except ValueError:
        raise InvalidMetadata(f"from {start[:40]!r} is not an xsd:dateTime") from None
    if earliest is not None and earliest.tzinfo is None:
        raise InvalidMetadata(f"from {start[:40]!r} needs a time zone")
    count = allocation.quantity(text("count") or "3", "count", MAX_WINDOWS)
    return machine, parse_duration(duration), earliest, count


def answer(windows: list[Window]) -> etree._Element:
    response = etree.Element(qname(RESOURCES, "availabilityResponse"), nsmap={"vws-res": RESOURCES})
    for window in windows:
        element = etree.SubElement(response, qname(RESOURCES, "window"))
        etree.SubElement(element, qname(RESOURCES, "start")).text = timestamp(window.start)
        etree.SubElement(element, qname(RESOURCES, "end")).text = timestamp(window.end)
    return response
