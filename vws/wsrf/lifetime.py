"""WS-ResourceLifetime 2004/06 (draft 01): Destroy and SetTerminationTime messages and the
CurrentTime/TerminationTime properties. Scheduled destruction runs on a ``vws.clock.Sweeper``.
"""

from datetime import UTC, datetime

from lxml import etree

from vws.clock import timestamp
from vws.errors import InvalidTerminationTime, MalformedMessage
from vws.xmlns import WSRL, XSI, qname


def destroy_response() -> etree._Element:
    return etree.Element(qname(WSRL, "DestroyResponse"), nsmap={"wsrl": WSRL})


def requested_termination_time(request: etree._Element) -> datetime | None:
    """The RequestedTerminationTime of a SetTerminationTime body; None when nil (never)."""
    requested = request.find(qname(WSRL, "RequestedTerminationTime"))
    if requested is None:
        raise MalformedMessage("SetTerminationTime without RequestedTerminationTime")
    if requested.get(qname(XSI, "nil")) in ("true", "1"):
        return None
    return parse_datetime(requested.text or "")


def set_termination_time_response(new: datetime | None, now: datetime) -> etree._Element:
    response = etree.Element(qname(WSRL, "SetTerminationTimeResponse"), nsmap={"wsrl": WSRL, "xsi": XSI})
    new_time = etree.SubElement(response, qname(WSRL, "NewTerminationTime"))
    if new is None:
        new_time.set(qname(XSI, "nil"), "true")
    else:
        new_time.text = timestamp(new)
    etree.SubElement(response, qname(WSRL, "CurrentTime")).text = timestamp(now)
    return response


def time_properties(termination: datetime | None, now: datetime) -> list[etree._Element]:
    """The CurrentTime and TerminationTime resource properties every lifetime resource has."""
    current = etree.Element(qname(WSRL, "CurrentTime"), nsmap={"wsrl": WSRL})
    current.text = timestamp(now)
    ends = etree.Element(qname(WSRL, "TerminationTime"), nsmap={"wsrl": WSRL, "xsi": XSI})
    if termination is None:
        ends.set(qname(XSI, "nil"), "true")
    else:
        ends.text = timestamp(termination)
    return [current, ends]


def parse_datetime(text: str) -> datetime:
    """An xsd:dateTime; one without a zone is taken as UTC, as GT4 did."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidTerminationTime(f"{text.strip()!r} is not an xsd:dateTime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
