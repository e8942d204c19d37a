"""The one hardened XML parser every untrusted document goes through.

No DTD loading, no entity resolution, no network, bounded size and depth: a
billion-laughs or external-entity document is refused before anything reads it.

Comments and processing instructions are dropped while parsing, so the text of an
element is all its character data: ``1<!--x-->0`` reads as ``10``, which is also
what exclusive c14n without comments digests. Read through lxml's ``.text``, a
comment would end the text early and a signed ``10`` would be acted on as ``1``.
SOAP 1.1 (section 3) forbids processing instructions in a message anyway; CDATA
sections and character references become plain text, as c14n renders them.
"""

import copy

from lxml import etree

from vws.errors import MalformedMessage
from vws.xmlns import WSNT, XSI, qname

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)


def parse(data: bytes) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise MalformedMessage."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise MalformedMessage(f"document of {len(data)} bytes exceeds {MAX_DOCUMENT_BYTES}")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise MalformedMessage(f"not well-formed XML: {exc}") from None
    _refuse_doctype(root)
    _refuse_deep(root)
    return root


def parse_canonical(*forms: bytes) -> list[etree._Element]:
    """Parse canonical forms (c14n) of elements this process has already parsed, so within the limits.

    Each form declares every namespace it uses, so all are read in one pass under a bare holder.
    """
    return list(etree.fromstring(b"<_>" + b"".join(forms) + b"</_>", _PARSER))


def _refuse_doctype(root: etree._Element) -> None:
    # A DOCTYPE has no place in SOAP (SOAP 1.1 section 3); entities hide in it.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise MalformedMessage("a document type declaration is not allowed")


# An element MAX_DEPTH + 1 levels down (the root is level 1), found in C: a tenth of the cost of walking in Python.
_TOO_DEEP = etree.XPath("boolean(" + "/*" * (MAX_DEPTH + 1) + ")")


def _refuse_deep(root: etree._Element) -> None:
    if _TOO_DEEP(root):
        raise MalformedMessage(f"elements nested deeper than {MAX_DEPTH}")


def detached(element: etree._Element) -> etree._Element:
    """A copy of ``element`` with its in-scope namespaces and without its tail text."""
    copied = copy.deepcopy(element)
    copied.tail = None
    return copied


# Where vws's messages hold QNames as values: elements whose text is one (a topic
# expression in the Simple dialect, the SOAP 1.1 faultcode), and elements that carry an
# xsi:type. ``adopt`` keeps them meaning what they meant when elements move.
QNAME_TEXT = (qname(WSNT, "Topic"), qname(WSNT, "TopicExpression"), "faultcode")
XSI_TYPED = (qname(WSNT, "Message"),)
XSI_TYPE = qname(XSI, "type")


def adopt(parent: etree._Element, child: etree._Element) -> etree._Element:
    """Append ``child`` to ``parent``; QName values inside it keep naming what they named.

    On a move lxml drops each namespace declaration that is redundant where it lands (its
    namespace bound above, maybe to another prefix) and renames element prefixes to
    match, but it cannot rename a prefix in a value: a wsnt:Topic's ``tns:currentState``
    would then name an unbound prefix. Each QName value (see ``QNAME_TEXT`` and
    ``XSI_TYPED``) is read before the move and written again after it, with the prefix
    in scope where it now stands (declared on the element if there is none).
    """
    values = [(element, attribute, _meaning(element, value)) for element, attribute, value in _qname_values(child)]
    parent.append(child)
    for element, attribute, meaning in values:
        if meaning is not None and _meaning(element, _value(element, attribute)) != meaning:
            if attribute is None:
                element.text = etree.QName(*meaning)
            else:
                element.set(attribute, etree.QName(*meaning))
    return child


def _qname_values(root: etree._Element) -> list[tuple[etree._Element, str | None, str]]:
    """(element, attribute or None for its text, value) of each QName value under ``root``."""
    found: list[tuple[etree._Element, str | None, str]] = []
    for element in root.iter(*QNAME_TEXT, *XSI_TYPED):
        if element.tag in XSI_TYPED:
            if element.get(XSI_TYPE):
                found.append((element, XSI_TYPE, element.get(XSI_TYPE)))
        elif element.text:
            found.append((element, None, element.text))
    return found


def _value(element: etree._Element, attribute: str | None) -> str:
    return (element.text if attribute is None else element.get(attribute)) or ""


def _meaning(element: etree._Element, value: str) -> tuple[str, str] | None:
    """(namespace, local name) of a QName value where ``element`` stands; None if unbound."""
    prefix, _, local = value.strip().rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    if namespace is None and prefix:
        return None
    return namespace or "", local
