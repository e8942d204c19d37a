"""Signing (``MessageSigner``) adds to the Header, first::

<wsse:Security soapenv:mustUnderstand="1">
  <wsu:Timestamp wsu:Id=..><wsu:Created/><wsu:Expires/></wsu:Timestamp>
  <wsse:BinarySecurityToken ValueType="..#X509PKIPathv1" (or #X509v3) wsu:Id=..>
  <ds:Signature>  exclusive c14n, RSA-SHA256, one Reference per signed element by wsu:Id
    <ds:KeyInfo><wsse:SecurityTokenReference><wsse:Reference URI="#token"/>
"""

import base64
import secrets
from collections.abc import Callable, Iterable
from datetime import timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from vws.clock import Clock, timestamp
from vws.security.credentials import Credential
from vws.security.wssecurity.envelope import (
    BODY,
    BST,
    C14N_METHOD,
    CREATED,
    DIGEST_METHOD,
    DIGEST_VALUE,
    ENVELOPE,
    EXPIRES,
    HEADER,
    INCLUSIVE_NS,
    KEY_INFO,
    MUST_UNDERSTAND,
    REFERENCE,
    SECURITY,
    SIG_METHOD,
    SIGNATURE,
    SIGNATURE_VALUE,
    SIGNED_INFO,
    STR,
    STR_REF,
    TIMESTAMP,
    TRANSFORM,
    TRANSFORMS,
    WSU_ID,
    c14n,
    envelope_parts,
    header_blocks,
    pki_path,
    text_prefixes,
)
from vws.security.wssecurity.policy import HASHES, RSA_SHA256, SHA256, digest_of, required_headers
from vws.xmlns import (
    BASE64_BINARY,
    DS,
    EXC_C14N,
    WSSE,
    WSU,
    X509_PKIPATH,
    X509V3,
)
from vws.xmlparse import parse_canonical

# Makes the RSA signature (PKCS#1 v1.5) of the bytes with the hash: by default, the credential's key here.
Sign = Callable[[bytes, hashes.HashAlgorithm], bytes]


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _ensure_id(element: etree._Element, prefix: str) -> str:
    existing = element.get(WSU_ID)
    if existing:
        return existing
    value = _new_id(prefix)
    element.set(WSU_ID, value)
    return value


class MessageSigner:
    """Signs envelopes with one credential (a user's proxy, or the service's host credential)."""

    def __init__(
        self,
        credential: Credential,
        clock: Clock,
        *,
        signature_method: str = RSA_SHA256,
        digest_method: str = SHA256,
        lifetime: timedelta = timedelta(seconds=300),
        sign: Sign | None = None,
    ) -> None:
        """``sign``: who makes the RSA signatures with the credential's key (a ``KeyHolder``'s helper)."""
        if not isinstance(credential.key, rsa.RSAPrivateKey):
            raise ValueError("only RSA credentials can sign (RSA-SHA256 and its kin)")
        if signature_method not in HASHES or digest_method not in HASHES:
            raise ValueError("unsupported signature or digest method")
        self.credential = credential
        self.clock = clock
        self.signature_method = signature_method
        self.digest_method = digest_method
        self.lifetime = lifetime
        self._sign = sign or self._sign_here
        # WS-Security X.509 token profile 3.1: a PkiPath carries a proxy's whole chain, X509v3 one certificate.
        chain = credential.chain
        self._token_type = X509_PKIPATH if len(chain) > 1 else X509V3
        token = pki_path(chain) if len(chain) > 1 else chain[0].public_bytes(serialization.Encoding.DER)
        self._token = base64.b64encode(token).decode()

    def sign(self, envelope: etree._Element, also_sign: Iterable[etree._Element] | None = None) -> etree._Element:
        """Add a signed wsse:Security header to ``envelope`` in place and return it.

        Body and Timestamp are always signed; ``also_sign`` lists header blocks
        (direct children of the Header) to sign too. ``None`` means every header
        the default policy requires (WS-Addressing and resource keys).
        """
        if envelope.tag != ENVELOPE:
            raise ValueError("not a SOAP 1.1 Envelope")
        header, body = envelope_parts(envelope)
        if header is None:
            header = etree.Element(HEADER)
            envelope.insert(0, header)
        if any(block.tag == SECURITY for block in header_blocks(header)):
            raise ValueError("the envelope already has a wsse:Security header")
        extra = required_headers(envelope) if also_sign is None else list(also_sign)
        for block in extra:
            if block.getparent() is not header:
                raise ValueError(f"{block.tag} is not a header block of this envelope")

        security = etree.Element(SECURITY, nsmap={"wsse": WSSE, "wsu": WSU})
        security.set(MUST_UNDERSTAND, "1")
        header.insert(0, security)
        stamp = self._timestamp(security)
        token_id = self._binary_token(security)
        targets = {id(element): element for element in (body, stamp, *extra)}  # each once, in this order
        self._signature(security, targets.values(), token_id)
        return envelope

    def _timestamp(self, security: etree._Element) -> etree._Element:
        now = self.clock.now()
        stamp = etree.SubElement(security, TIMESTAMP)
        stamp.set(WSU_ID, _new_id("TS"))
        etree.SubElement(stamp, CREATED).text = timestamp(now)
        etree.SubElement(stamp, EXPIRES).text = timestamp(now + self.lifetime)
        return stamp

    def _binary_token(self, security: etree._Element) -> str:
        token = etree.SubElement(security, BST, EncodingType=BASE64_BINARY, ValueType=self._token_type)
        token.set(WSU_ID, _new_id("X509"))
        token.text = self._token
        return token.get(WSU_ID)

    def _signature(self, security: etree._Element, targets: Iterable[etree._Element], token_id: str) -> None:
        signature = etree.SubElement(security, SIGNATURE, nsmap={"ds": DS})
        signature.set("Id", _new_id("SIG"))
        signed_info = etree.SubElement(signature, SIGNED_INFO)
        etree.SubElement(signed_info, C14N_METHOD, Algorithm=EXC_C14N)
        etree.SubElement(signed_info, SIG_METHOD, Algorithm=self.signature_method)
        for element in targets:
            self._reference(signed_info, element)
        value = self._sign(c14n(signed_info), HASHES[self.signature_method]())
        etree.SubElement(signature, SIGNATURE_VALUE).text = base64.b64encode(value).decode()
        key_info = etree.SubElement(signature, KEY_INFO)
        reference = etree.SubElement(etree.SubElement(key_info, STR), STR_REF, URI="#" + token_id)
        reference.set("ValueType", self._token_type)

    def _sign_here(self, data: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        return self.credential.key.sign(data, padding.PKCS1v15(), algorithm)  # type: ignore[union-attr]

    def _reference(self, signed_info: etree._Element, element: etree._Element) -> None:
        is_body = element.tag == BODY
        ref = etree.SubElement(signed_info, REFERENCE, URI="#" + _ensure_id(element, "Body" if is_body else "H"))
        transform = etree.SubElement(etree.SubElement(ref, TRANSFORMS), TRANSFORM, Algorithm=EXC_C14N)
        # QName text lives in bodies (property names, queries, topics); headers carry keys and URIs.
        inclusive = text_prefixes(element) if is_body else []
        if inclusive:
            etree.SubElement(transform, INCLUSIVE_NS, PrefixList=" ".join(inclusive), nsmap={"ec": EXC_C14N})
            # lxml hands c14n only the prefixes its document dictionary holds, which a tree built in code
            # may lack: the parsed copy (with every in-scope declaration) has them all.
            (element,) = parse_canonical(etree.tostring(element, with_tail=False))
        etree.SubElement(ref, DIGEST_METHOD, Algorithm=self.digest_method)
        digest = digest_of(c14n(element, inclusive), self.digest_method)
        etree.SubElement(ref, DIGEST_VALUE).text = base64.b64encode(digest).decode()
