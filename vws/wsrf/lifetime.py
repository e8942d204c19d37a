"""WS-ResourceLifetime 2004/06 (draft 01): Destroy and SetTerminationTime messages and the
CurrentTime/TerminationTime properties. Scheduled destruction runs on a ``vws.clock.Sweeper``.
"""

import re
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


# xsd:dateTime in ASCII digits: datetime.fromisoformat alone also reads dates without a
# time, week dates and the basic format, none of which a schema-valid message carries.
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


def parse_datetime(text: str) -> datetime:
    """An xsd:dateTime; one without a zone is taken as UTC, as GT4 did."""
    text = text.strip()
    if _DATETIME.fullmatch(text):
        try:
            moment = datetime.fromisoformat(text)
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        except (ValueError, OverflowError):  # no such day, or a zone moving year 1 or 9999 off the calendar
            pass
    raise InvalidTerminationTime(f"{text!r} is not an xsd:dateTime within years 1 to 9999")
