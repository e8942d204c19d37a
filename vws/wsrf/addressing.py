"""WS-Addressing 2004/03 (member submission), the generation GT4.0 clients speak.

An endpoint reference names a WS-Resource: the service Address plus
ReferenceProperties that carry the resource key. Clients echo each reference
property as a SOAP header, next to To, Action and MessageID.
"""

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from vws.xmlns import WSA, qname
from vws.xmlparse import detached

_ADDRESS = qname(WSA, "Address")
_PROPERTIES = qname(WSA, "ReferenceProperties")
_PARAMETERS = qname(WSA, "ReferenceParameters")
_WSA_HEADERS = frozenset(
    qname(WSA, name) for name in ("To", "Action", "MessageID", "RelatesTo", "ReplyTo", "From", "FaultTo")
)
_XML_SPACE = " \t\r\n"  # what may surround a key; str.strip() would also eat Unicode spaces
# A numeric key has one spelling: ASCII digits, no leading zero, within a SQLite integer.
# (str.isdigit() also takes '²', and int() reads '١' as 1.)
_INTEGER_KEY = re.compile(r"[1-9][0-9]{0,17}")


@dataclass(frozen=True)
class EndpointReference:
    address: str
    properties: tuple[etree._Element, ...] = ()

    def to_element(self, tag: str = qname(WSA, "EndpointReference")) -> etree._Element:
        epr = etree.Element(tag, nsmap={"wsa": WSA})
        etree.SubElement(epr, _ADDRESS).text = self.address
        if self.properties:
            holder = etree.SubElement(epr, _PROPERTIES)
            holder.extend(detached(element) for element in self.properties)
        return epr

    @classmethod
    def from_element(cls, epr: etree._Element) -> "EndpointReference":
        address = epr.findtext(_ADDRESS)
        if not address:
            raise ValueError("endpoint reference without an Address")
        holder = epr.find(_PROPERTIES)
        return cls(address.strip(), tuple(detached(child) for child in (holder if holder is not None else ())))

    def key(self, tag: str) -> str | None:
        """The text of the reference property ``tag``: a resource key."""
        return _key(self.properties, tag)


def key_property(tag: str, value: str) -> etree._Element:
    element = etree.Element(tag, nsmap={None: etree.QName(tag).namespace})
    element.text = value
    return element


@dataclass(frozen=True)
class MessageHeaders:
    """The addressing headers of one request, and the echoed reference properties."""

    to: str | None
    action: str | None
    message_id: str | None
    reply_to: EndpointReference | None
    reference_properties: tuple[etree._Element, ...]

    @classmethod
    def parse(cls, headers: Iterable[etree._Element]) -> "MessageHeaders":
        found: dict[str, etree._Element] = {}
        others = []
        for header in headers:
            if not isinstance(header.tag, str):
                continue  # comments and processing instructions
            if header.tag in _WSA_HEADERS:
                found[header.tag] = header
            else:
                others.append(header)
        reply_to = found.get(qname(WSA, "ReplyTo"))
        return cls(
            to=_text(found.get(qname(WSA, "To"))),
            action=_text(found.get(qname(WSA, "Action"))),
            message_id=_text(found.get(qname(WSA, "MessageID"))),
            reply_to=EndpointReference.from_element(reply_to) if reply_to is not None else None,
            reference_properties=tuple(others),
        )

    def property(self, tag: str) -> str | None:
        return _key(self.reference_properties, tag)


def _key(properties: Iterable[etree._Element], tag: str) -> str | None:
    """The text of the reference property ``tag``, without surrounding XML whitespace."""
    for element in properties:
        if element.tag == tag:
            return (element.text or "").strip(_XML_SPACE)
    return None


def integer_key(text: str | None) -> int | None:
    """A numeric resource key's value, or None when ``text`` is not one."""
    return int(text) if text is not None and _INTEGER_KEY.fullmatch(text) else None


def reply_headers(action: str, relates_to: str | None) -> list[etree._Element]:
    """The headers of a response: its Action, a fresh MessageID, RelatesTo the request."""
    headers = [_header("Action", action), _header("MessageID", f"uuid:{uuid.uuid4()}")]
    if relates_to:
        headers.append(_header("RelatesTo", relates_to))
    headers.append(_header("To", WSA + "/role/anonymous"))
    return headers


def request_headers(to: str, action: str, properties: Sequence[etree._Element] = ()) -> list[etree._Element]:
    """The headers a client sends to a WS-Resource: To, Action, MessageID and its key."""
    return [
        _header("To", to),
        _header("Action", action),
        _header("MessageID", f"uuid:{uuid.uuid4()}"),
        *(detached(element) for element in properties),
    ]


def _header(name: str, text: str) -> etree._Element:
    element = etree.Element(qname(WSA, name), nsmap={"wsa": WSA})
    element.text = text
    return element


def _text(element: etree._Element | None) -> str | None:
    return None if element is None or element.text is None else element.text.strip()
