"""GSI Secure Message: WS-Security 1.0 X.509 signatures on SOAP 1.1 envelopes.

Signing (``MessageSigner``) adds to the Header, first::

    <wsse:Security soapenv:mustUnderstand="1">
      <wsu:Timestamp wsu:Id=..><wsu:Created/><wsu:Expires/></wsu:Timestamp>
      <wsse:BinarySecurityToken ValueType="..#X509PKIPathv1" (or #X509v3) wsu:Id=..>
      <ds:Signature>  exclusive c14n, RSA-SHA256, one Reference per signed element by wsu:Id
        <ds:KeyInfo><wsse:SecurityTokenReference><wsse:Reference URI="#token"/>

Verification (``MessageVerifier``) is written out rather than delegated to a
general XML-DSig library, because what matters is *which* elements were signed:
every Reference must resolve, through an Id that occurs exactly once in the whole
envelope, to the envelope's real Body, its Timestamp, its token, or a header
block that is a direct child of the real Header (element identity, not a name
match). Only those elements are returned, so a dispatcher that reads
``VerifiedMessage.body`` and ``signed_headers`` cannot be fed a wrapped forgery.
Checks run cheapest-first; the replay cache is consulted last, so a forged
message cannot evict or poison an entry.
"""

import base64
import heapq
import hmac
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from vws.clock import Clock, timestamp, utc
from vws.errors import AuthenticationFailed
from vws.security import der
from vws.security.credentials import Credential
from vws.security.validation import ChainValidator, ValidatedChain
from vws.xmlns import (
    BASE64_BINARY,
    DS,
    EXC_C14N,
    SOAP_ENV,
    WORKSPACE,
    WSA,
    WSSE,
    WSU,
    X509_PKIPATH,
    X509V3,
)

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_HASHES = {RSA_SHA1: hashes.SHA1, RSA_SHA256: hashes.SHA256, SHA1: hashes.SHA1, SHA256: hashes.SHA256}
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
# Every attribute some XML-DSig implementation resolves "#x" against: all must be unique together.
ID_ATTRIBUTES = (f"{{{WSU}}}Id", "Id", "ID", "id", _XML_ID)

_ENVELOPE = f"{{{SOAP_ENV}}}Envelope"
_HEADER = f"{{{SOAP_ENV}}}Header"
_BODY = f"{{{SOAP_ENV}}}Body"
_MUST_UNDERSTAND = f"{{{SOAP_ENV}}}mustUnderstand"
_SECURITY = f"{{{WSSE}}}Security"
_BST = f"{{{WSSE}}}BinarySecurityToken"
_STR = f"{{{WSSE}}}SecurityTokenReference"
_STR_REF = f"{{{WSSE}}}Reference"
_TIMESTAMP = f"{{{WSU}}}Timestamp"
_CREATED = f"{{{WSU}}}Created"
_EXPIRES = f"{{{WSU}}}Expires"
_WSU_ID = f"{{{WSU}}}Id"
_SIGNATURE = f"{{{DS}}}Signature"
_SIGNED_INFO = f"{{{DS}}}SignedInfo"
_C14N_METHOD = f"{{{DS}}}CanonicalizationMethod"
_SIG_METHOD = f"{{{DS}}}SignatureMethod"
_REFERENCE = f"{{{DS}}}Reference"
_TRANSFORMS = f"{{{DS}}}Transforms"
_TRANSFORM = f"{{{DS}}}Transform"
_DIGEST_METHOD = f"{{{DS}}}DigestMethod"
_DIGEST_VALUE = f"{{{DS}}}DigestValue"
_SIGNATURE_VALUE = f"{{{DS}}}SignatureValue"
_KEY_INFO = f"{{{DS}}}KeyInfo"
_INCLUSIVE_NS = f"{{{EXC_C14N}}}InclusiveNamespaces"


class SignatureRefused(AuthenticationFailed):
    """A WS-Security header is missing, malformed, wrong, stale, replayed or covers the wrong elements."""


@dataclass(frozen=True)
class SecurityPolicy:
    signature_methods: frozenset[str] = frozenset({RSA_SHA256, RSA_SHA1})
    digest_methods: frozenset[str] = frozenset({SHA256, SHA1})
    require_addressing: bool = True  # every WS-Addressing header present must be signed
    require_workspace_headers: bool = True  # every header in a workspace namespace (resource keys) too
    skew: timedelta = timedelta(seconds=300)
    max_age: timedelta = timedelta(seconds=300)  # a Timestamp older than this (plus skew) is stale

    def must_sign(self, header_block: etree._Element) -> bool:
        namespace = etree.QName(header_block).namespace or ""
        if self.require_addressing and namespace == WSA:
            return True
        return self.require_workspace_headers and namespace.startswith(WORKSPACE)


DEFAULT_POLICY = SecurityPolicy()


class ReplayCache:
    """Signature values seen, each kept until its message could no longer be accepted anyway."""

    def __init__(self, clock: Clock, max_entries: int = 1_000_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[bytes, datetime] = {}
        self._heap: list[tuple[datetime, bytes]] = []
        self._max = max_entries

    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` is offered before ``until``; False for every repeat."""
        now = self._clock.now()
        with self._lock:
            while self._heap and self._heap[0][0] < now:
                expired, old = heapq.heappop(self._heap)
                if self._until.get(old) == expired:
                    del self._until[old]
            if key in self._until:
                return False
            if len(self._until) >= self._max:
                raise SignatureRefused("replay cache is full: refusing signed messages until entries expire")
            self._until[key] = until
            heapq.heappush(self._heap, (until, key))
            return True

    def __len__(self) -> int:
        return len(self._until)


@dataclass(frozen=True)
class VerifiedMessage:
    chain: ValidatedChain
    body: etree._Element  # the envelope's real soapenv:Body
    signed_headers: tuple[etree._Element, ...]  # real header blocks the signature covers, in document order
    created: datetime
    expires: datetime
    signature_method: str = field(default=RSA_SHA256)

    @property
    def identity(self) -> str:
        return self.chain.identity


# -- shared helpers ------------------------------------------------------------------------------


def envelope_parts(envelope: etree._Element) -> tuple[etree._Element | None, etree._Element]:
    """(Header or None, Body) of a SOAP 1.1 Envelope: an optional Header first, then exactly one Body."""
    if envelope.tag != _ENVELOPE:
        raise SignatureRefused("not a SOAP 1.1 Envelope")
    children = [child for child in envelope if isinstance(child.tag, str)]
    header = children[0] if children and children[0].tag == _HEADER else None
    rest = children[1:] if header is not None else children
    if len(rest) != 1 or rest[0].tag != _BODY:
        raise SignatureRefused("an Envelope holds an optional Header and exactly one Body, in that order")
    return header, rest[0]


def header_blocks(header: etree._Element | None) -> list[etree._Element]:
    return [] if header is None else [child for child in header if isinstance(child.tag, str)]


def required_headers(envelope: etree._Element, policy: SecurityPolicy = DEFAULT_POLICY) -> list[etree._Element]:
    """The header blocks ``policy`` wants signed (WS-Addressing, workspace keys), in document order."""
    header, _ = envelope_parts(envelope)
    return [block for block in header_blocks(header) if block.tag != _SECURITY and policy.must_sign(block)]


def _c14n(element: etree._Element, prefixes: Sequence[str] | None = None) -> bytes:
    return etree.tostring(
        element,
        method="c14n",
        exclusive=True,
        with_comments=False,
        inclusive_ns_prefixes=list(prefixes) if prefixes else None,
    )


def _digest(data: bytes, method: str) -> bytes:
    h = hashes.Hash(_HASHES[method]())
    h.update(data)
    return h.finalize()


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _ensure_id(element: etree._Element, prefix: str) -> str:
    existing = element.get(_WSU_ID)
    if existing:
        return existing
    value = _new_id(prefix)
    element.set(_WSU_ID, value)
    return value


def pki_path(chain: Sequence[x509.Certificate]) -> bytes:
    """X509PKIPathv1: DER SEQUENCE OF Certificate, the trust-anchor end first (leaf last)."""
    return der.tlv(der.SEQUENCE, b"".join(c.public_bytes(serialization.Encoding.DER) for c in reversed(chain)))


def read_pki_path(data: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a PkiPath, leaf first."""
    return tuple(reversed([x509.load_der_x509_certificate(whole) for whole in der.sequence_of(data)]))


# -- signing -------------------------------------------------------------------------------------


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
    ) -> None:
        if not isinstance(credential.key, rsa.RSAPrivateKey):
            raise ValueError("only RSA credentials can sign (RSA-SHA256 / RSA-SHA1)")
        if signature_method not in (RSA_SHA1, RSA_SHA256) or digest_method not in (SHA1, SHA256):
            raise ValueError("unsupported signature or digest method")
        self.credential = credential
        self.clock = clock
        self.signature_method = signature_method
        self.digest_method = digest_method
        self.lifetime = lifetime
        chain = credential.chain
        if len(chain) > 1:
            self._token_type = X509_PKIPATH
            self._token = base64.b64encode(pki_path(chain)).decode()
        else:
            self._token_type = X509V3
            self._token = base64.b64encode(chain[0].public_bytes(serialization.Encoding.DER)).decode()

    def sign(self, envelope: etree._Element, also_sign: Iterable[etree._Element] | None = None) -> etree._Element:
        """Add a signed wsse:Security header to ``envelope`` in place and return it.

        Body and Timestamp are always signed; ``also_sign`` lists header blocks
        (direct children of the Header) to sign too. ``None`` means every header
        the default policy requires (WS-Addressing and workspace namespaces).
        """
        if envelope.tag != _ENVELOPE:
            raise ValueError("not a SOAP 1.1 Envelope")
        header, body = envelope_parts(envelope)
        if header is None:
            header = etree.Element(_HEADER)
            envelope.insert(0, header)
        if any(block.tag == _SECURITY for block in header_blocks(header)):
            raise ValueError("the envelope already has a wsse:Security header")
        extra = required_headers(envelope) if also_sign is None else list(also_sign)
        for block in extra:
            if block.getparent() is not header:
                raise ValueError(f"{block.tag} is not a header block of this envelope")

        now = self.clock.now()
        security = etree.Element(_SECURITY, nsmap={"wsse": WSSE, "wsu": WSU})
        security.set(_MUST_UNDERSTAND, "1")
        header.insert(0, security)
        stamp = etree.SubElement(security, _TIMESTAMP)
        stamp_id = _new_id("TS")
        stamp.set(_WSU_ID, stamp_id)
        etree.SubElement(stamp, _CREATED).text = timestamp(now)
        etree.SubElement(stamp, _EXPIRES).text = timestamp(now + self.lifetime)
        token = etree.SubElement(security, _BST, EncodingType=BASE64_BINARY, ValueType=self._token_type)
        token_id = _new_id("X509")
        token.set(_WSU_ID, token_id)
        token.text = self._token

        signature = etree.SubElement(security, _SIGNATURE, nsmap={"ds": DS})
        signature.set("Id", _new_id("SIG"))
        signed_info = etree.SubElement(signature, _SIGNED_INFO)
        etree.SubElement(signed_info, _C14N_METHOD, Algorithm=EXC_C14N)
        etree.SubElement(signed_info, _SIG_METHOD, Algorithm=self.signature_method)
        targets = [(body, _ensure_id(body, "Body")), (stamp, stamp_id)]
        seen = {id(body), id(stamp)}
        for block in extra:
            if id(block) not in seen:
                seen.add(id(block))
                targets.append((block, _ensure_id(block, "H")))
        for element, ident in targets:
            ref = etree.SubElement(signed_info, _REFERENCE, URI="#" + ident)
            transforms = etree.SubElement(ref, _TRANSFORMS)
            etree.SubElement(transforms, _TRANSFORM, Algorithm=EXC_C14N)
            etree.SubElement(ref, _DIGEST_METHOD, Algorithm=self.digest_method)
            etree.SubElement(ref, _DIGEST_VALUE).text = base64.b64encode(
                _digest(_c14n(element), self.digest_method)
            ).decode()
        value = self.credential.key.sign(_c14n(signed_info), padding.PKCS1v15(), _HASHES[self.signature_method]())
        etree.SubElement(signature, _SIGNATURE_VALUE).text = base64.b64encode(value).decode()
        key_info = etree.SubElement(signature, _KEY_INFO)
        reference = etree.SubElement(etree.SubElement(key_info, _STR), _STR_REF, URI="#" + token_id)
        reference.set("ValueType", self._token_type)
        return envelope


# -- verification --------------------------------------------------------------------------------


def _one(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = [child for child in parent if child.tag == tag]
    if len(found) != 1:
        raise SignatureRefused(f"{what}: expected exactly one {etree.QName(tag).localname}, found {len(found)}")
    return found[0]


def _prefix_list(parent: etree._Element) -> list[str] | None:
    inclusive = [child for child in parent if child.tag == _INCLUSIVE_NS]
    if not inclusive:
        return None
    if len(inclusive) > 1:
        raise SignatureRefused("more than one InclusiveNamespaces")
    return [p if p != "#default" else "" for p in (inclusive[0].get("PrefixList") or "").split()] or None


def _parse_time(element: etree._Element | None, what: str) -> datetime | None:
    if element is None:
        return None
    try:
        moment = datetime.fromisoformat((element.text or "").strip())
    except ValueError:
        raise SignatureRefused(f"wsu:{what} {element.text!r} is not an xsd:dateTime") from None
    if moment.tzinfo is None:
        raise SignatureRefused(f"wsu:{what} {element.text!r} has no time zone (WS-Security requires UTC)")
    return utc(moment)


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (ValueError, TypeError):
        raise SignatureRefused(f"{what} is not base64") from None


class MessageVerifier:
    def __init__(
        self,
        trust_or_validator,
        clock: Clock,
        policy: SecurityPolicy = DEFAULT_POLICY,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        """``trust_or_validator``: a TrustStore, or a ChainValidator to share its cache."""
        self.validator = (
            trust_or_validator
            if isinstance(trust_or_validator, ChainValidator)
            else ChainValidator(trust_or_validator, clock)
        )
        self.clock = clock
        self.policy = policy
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache(clock)

    def verify(self, envelope: etree._Element) -> VerifiedMessage:
        """The verified message, or SignatureRefused / UntrustedChain (both AuthenticationFailed)."""
        policy = self.policy
        header, body = envelope_parts(envelope)
        blocks = header_blocks(header)
        securities = [block for block in blocks if block.tag == _SECURITY]
        if not securities:
            raise SignatureRefused("the message is not signed: it has no wsse:Security header")
        if len(securities) > 1:
            raise SignatureRefused("more than one wsse:Security header")
        security = securities[0]
        signatures = list(envelope.iter(_SIGNATURE))
        if not signatures:
            raise SignatureRefused("the message is not signed: wsse:Security holds no ds:Signature")
        if len(signatures) > 1:
            raise SignatureRefused(
                f"the envelope holds {len(signatures)} ds:Signature elements; exactly one is accepted"
            )
        signature = signatures[0]
        if signature.getparent() is not security:
            raise SignatureRefused("the ds:Signature is not a child of the wsse:Security header")
        if sum(1 for _ in envelope.iter(_TIMESTAMP)) != 1:
            raise SignatureRefused("exactly one wsu:Timestamp is required, in the wsse:Security header")
        stamp = _one(security, _TIMESTAMP, "wsse:Security")

        # Ids: unique across every attribute any resolver might use, anywhere in the envelope.
        ids: dict[str, etree._Element] = {}
        for element in envelope.iter():
            if not isinstance(element.tag, str):
                continue
            for name in ID_ATTRIBUTES:
                value = element.get(name)
                if value is not None:
                    if value in ids:
                        raise SignatureRefused(f"the Id {value!r} occurs more than once in the envelope")
                    ids[value] = element

        # Timestamp: fresh, unexpired, not from the future.
        now = self.clock.now()
        created = _parse_time(stamp.find(_CREATED), "Created")
        expires = _parse_time(stamp.find(_EXPIRES), "Expires")
        if created is None:
            raise SignatureRefused("wsu:Timestamp has no wsu:Created")
        if created > now + policy.skew:
            raise SignatureRefused(
                f"wsu:Timestamp was created in the future ({created.isoformat()}, now {now.isoformat()})"
            )
        if expires is not None and expires < created:
            raise SignatureRefused("wsu:Timestamp expires before it was created")
        if expires is not None and now > expires + policy.skew:
            raise SignatureRefused(f"wsu:Timestamp expired at {expires.isoformat()} (now {now.isoformat()})")
        deadline = created + policy.max_age
        if expires is not None:
            deadline = min(deadline, expires)
        if now > deadline + policy.skew:
            raise SignatureRefused(f"wsu:Timestamp is stale: created {created.isoformat()}, now {now.isoformat()}")

        # SignedInfo, strictly.
        signed_info = _one(signature, _SIGNED_INFO, "ds:Signature")
        c14n_method = _one(signed_info, _C14N_METHOD, "ds:SignedInfo")
        if c14n_method.get("Algorithm") != EXC_C14N:
            raise SignatureRefused(
                f"canonicalization {c14n_method.get('Algorithm')} is not allowed (exclusive c14n only)"
            )
        signature_method = _one(signed_info, _SIG_METHOD, "ds:SignedInfo").get("Algorithm")
        if signature_method not in policy.signature_methods:
            raise SignatureRefused(f"signature method {signature_method} is not allowed")
        references = [child for child in signed_info if child.tag == _REFERENCE]
        if not references:
            raise SignatureRefused("ds:SignedInfo has no ds:Reference")

        # The signer: a BinarySecurityToken in this Security header, named by KeyInfo.
        key_info = _one(signature, _KEY_INFO, "ds:Signature")
        token_ref = _one(_one(key_info, _STR, "ds:KeyInfo"), _STR_REF, "wsse:SecurityTokenReference")
        token_uri = token_ref.get("URI") or ""
        token = ids.get(token_uri[1:]) if token_uri.startswith("#") else None
        if token is None or token.tag != _BST or token.getparent() is not security:
            raise SignatureRefused(
                f"KeyInfo {token_uri!r} does not name a BinarySecurityToken in the wsse:Security header"
            )
        chain = self._token_chain(token)
        validated = self.validator.validate(chain)

        # What the signer may legitimately have signed: the real Body, Timestamp, tokens, header blocks.
        allowed = {id(body): body, id(stamp): stamp}
        for block in blocks:
            if block is not security:
                allowed[id(block)] = block
        for child in security:
            if child.tag == _BST:
                allowed[id(child)] = child

        covered: dict[int, etree._Element] = {}
        digests: list[tuple[etree._Element, str, bytes, list[str] | None]] = []
        for ref in references:
            uri = ref.get("URI")
            if uri is None or not uri.startswith("#") or len(uri) < 2:
                raise SignatureRefused(f"reference URI {uri!r} is not a same-document '#Id' reference")
            target = ids.get(uri[1:])
            if target is None:
                raise SignatureRefused(f"reference {uri} resolves to no element of the envelope")
            if id(target) not in allowed or allowed[id(target)] is not target:
                raise SignatureRefused(
                    f"reference {uri} resolves to {target.tag}, which is not the envelope's Body, "
                    "Timestamp, security token or a header block (signature wrapping?)"
                )
            if id(target) in covered:
                raise SignatureRefused(f"{target.tag} is referenced twice")
            covered[id(target)] = target
            transforms = [t for t in _one(ref, _TRANSFORMS, "ds:Reference") if isinstance(t.tag, str)]
            if len(transforms) != 1 or transforms[0].tag != _TRANSFORM or transforms[0].get("Algorithm") != EXC_C14N:
                raise SignatureRefused(f"reference {uri}: only a single exclusive-c14n transform is accepted")
            digest_method = _one(ref, _DIGEST_METHOD, "ds:Reference").get("Algorithm")
            if digest_method not in policy.digest_methods:
                raise SignatureRefused(f"digest method {digest_method} is not allowed")
            expected = _b64(_one(ref, _DIGEST_VALUE, "ds:Reference").text, "DigestValue")
            digests.append((target, digest_method, expected, _prefix_list(transforms[0])))

        # Required coverage.
        if id(body) not in covered:
            raise SignatureRefused("the signature does not cover the soapenv:Body")
        if id(stamp) not in covered:
            raise SignatureRefused("the signature does not cover the wsu:Timestamp")
        for block in blocks:
            if block is not security and policy.must_sign(block) and id(block) not in covered:
                raise SignatureRefused(f"the signature does not cover the {block.tag} header")

        # Cryptography: the signature over SignedInfo, then each digest.
        value = _b64(_one(signature, _SIGNATURE_VALUE, "ds:Signature").text, "SignatureValue")
        public_key = validated.leaf.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SignatureRefused("the signer's key is not an RSA key")
        try:
            public_key.verify(
                value, _c14n(signed_info, _prefix_list(c14n_method)), padding.PKCS1v15(), _HASHES[signature_method]()
            )
        except InvalidSignature:
            raise SignatureRefused(f"the signature value does not verify with the key of {validated.subject}") from None
        for target, digest_method, expected, prefixes in digests:
            if not hmac.compare_digest(_digest(_c14n(target, prefixes), digest_method), expected):
                raise SignatureRefused(
                    f"the digest of {target.tag} does not match: the element was changed after signing"
                )

        if not self.replay_cache.admit(value, deadline + policy.skew):
            raise SignatureRefused("replayed message: this signature was already accepted")
        return VerifiedMessage(
            chain=validated,
            body=body,
            signed_headers=tuple(block for block in blocks if id(block) in covered),
            created=created,
            expires=expires or deadline,
            signature_method=signature_method,
        )

    @staticmethod
    def _token_chain(token: etree._Element) -> tuple[x509.Certificate, ...]:
        value_type = token.get("ValueType")
        encoding = token.get("EncodingType")
        if encoding not in (None, BASE64_BINARY):
            raise SignatureRefused(f"BinarySecurityToken encoding {encoding} is not supported")
        data = _b64(token.text, "BinarySecurityToken")
        try:
            if value_type == X509V3:
                return (x509.load_der_x509_certificate(data),)
            if value_type == X509_PKIPATH:
                chain = read_pki_path(data)
                if not chain:
                    raise ValueError("empty PkiPath")
                return chain
        except ValueError as exc:
            raise SignatureRefused(f"BinarySecurityToken does not hold certificates: {exc}") from None
        raise SignatureRefused(f"BinarySecurityToken ValueType {value_type} is not supported")
