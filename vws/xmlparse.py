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
