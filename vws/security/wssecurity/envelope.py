"""The parts of a SOAP 1.1 envelope that WS-Security names, and how they are read and canonicalized."""

import base64
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from vws.errors import AuthenticationFailed
from vws.security import der
from vws.security.credentials import oneline
from vws.xmlns import (
    DS,
    EXC_C14N,
    SOAP_ENV,
    WSSE,
    WSU,
    X509V3,
)

ENVELOPE = f"{{{SOAP_ENV}}}Envelope"
HEADER = f"{{{SOAP_ENV}}}Header"
BODY = f"{{{SOAP_ENV}}}Body"
MUST_UNDERSTAND = f"{{{SOAP_ENV}}}mustUnderstand"
SECURITY = f"{{{WSSE}}}Security"
BST = f"{{{WSSE}}}BinarySecurityToken"
STR = f"{{{WSSE}}}SecurityTokenReference"
STR_REF = f"{{{WSSE}}}Reference"
TIMESTAMP = f"{{{WSU}}}Timestamp"
CREATED = f"{{{WSU}}}Created"
EXPIRES = f"{{{WSU}}}Expires"
WSU_ID = f"{{{WSU}}}Id"
SIGNATURE = f"{{{DS}}}Signature"
SIGNED_INFO = f"{{{DS}}}SignedInfo"
C14N_METHOD = f"{{{DS}}}CanonicalizationMethod"
SIG_METHOD = f"{{{DS}}}SignatureMethod"
REFERENCE = f"{{{DS}}}Reference"
TRANSFORMS = f"{{{DS}}}Transforms"
TRANSFORM = f"{{{DS}}}Transform"
DIGEST_METHOD = f"{{{DS}}}DigestMethod"
DIGEST_VALUE = f"{{{DS}}}DigestValue"
SIGNATURE_VALUE = f"{{{DS}}}SignatureValue"
KEY_INFO = f"{{{DS}}}KeyInfo"
INCLUSIVE_NS = f"{{{EXC_C14N}}}InclusiveNamespaces"


class SignatureRefused(AuthenticationFailed):
    """A WS-Security header is missing, malformed, wrong, stale, replayed or covers the wrong elements."""


def envelope_parts(envelope: etree._Element) -> tuple[etree._Element | None, etree._Element]:
    """(Header or None, Body) of a SOAP 1.1 Envelope: an optional Header first, then exactly one Body."""
    if envelope.tag != ENVELOPE:
        raise SignatureRefused("not a SOAP 1.1 Envelope")
    children = [child for child in envelope if isinstance(child.tag, str)]
    header = children[0] if children and children[0].tag == HEADER else None
    rest = children[1:] if header is not None else children
    if len(rest) != 1 or rest[0].tag != BODY:
        raise SignatureRefused("an Envelope holds an optional Header and exactly one Body, in that order")
    return header, rest[0]


def header_blocks(header: etree._Element | None) -> list[etree._Element]:
    return [] if header is None else [child for child in header if isinstance(child.tag, str)]


def c14n(element: etree._Element, prefixes: Sequence[str] | None = None) -> bytes:
    return etree.tostring(
        element,
        method="c14n",
        exclusive=True,
        with_comments=False,
        inclusive_ns_prefixes=list(prefixes) if prefixes else None,
    )


# A prefix as a QName or an XPath name test uses it: an NCName, a colon, then a name or '*' (so not "http://").
_QNAME_PREFIX = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-]*):(?=[A-Za-z_*])")


def text_prefixes(element: etree._Element) -> list[str]:
    """The in-scope prefixes that text in ``element`` may use as QName prefixes: what InclusiveNamespaces must list.

    An unprefixed QName in text is not covered this way: lxml's c14n cannot take "#default".
    """
    found: set[str] = set()
    for node in element.iter():
        names = _QNAME_PREFIX.findall(node.text) if node.text and ":" in node.text else None
        if names:
            found.update(node.nsmap.keys() & set(names))  # nsmap walks the ancestors: only when needed
    return sorted(found)


def pki_path(chain: Sequence[x509.Certificate]) -> bytes:
    """X509PKIPathv1: DER SEQUENCE OF Certificate, the trust-anchor end first (leaf last)."""
    return der.tlv(der.SEQUENCE, b"".join(c.public_bytes(serialization.Encoding.DER) for c in reversed(chain)))


def read_pki_path(data: bytes) -> tuple[bytes, ...]:
    """The DER certificates of a PkiPath, leaf first."""
    return tuple(reversed(der.sequence_of(data)))


def claimed_signer(envelope: etree._Element) -> str | None:
    """The subject of the certificate a message's first security token holds, *not* verified: for logs only."""
    try:
        header, _ = envelope_parts(envelope)
        token = next(next(b for b in header_blocks(header) if b.tag == SECURITY).iterchildren(BST))
        data = decode_b64(token.text, "BinarySecurityToken")
        leaf = data if token.get("ValueType") == X509V3 else read_pki_path(data)[0]
        return oneline(x509.load_der_x509_certificate(leaf).subject)
    except (SignatureRefused, StopIteration, IndexError, ValueError):
        return None


def decode_b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (ValueError, TypeError):
        raise SignatureRefused(f"{what} is not base64") from None
