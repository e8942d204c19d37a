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

What is returned is each element *as digested*: its exclusive-c14n form, parsed
again. Exclusive c14n leaves out a namespace declaration that no element or
attribute name uses, so a prefix used only in text (a QName such as
``t:currentState``, an XPath, a topic expression) would keep whatever binding an
attacker gave it. Parsed from the canonical form, such a prefix is unbound unless
the signer listed it in the transform's InclusiveNamespaces PrefixList: a reader
resolving it refuses the message instead of guessing. The signer lists every
prefix its Body's text uses, so its own messages keep their meaning.
"""

import base64
import heapq
import hmac
import re
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from vws.clock import Clock, timestamp, utc
from vws.errors import AuthenticationFailed
from vws.security import der
from vws.security.credentials import Credential, oneline
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator, ValidatedChain
from vws.xmlns import (
    BASE64_BINARY,
    DS,
    EXC_C14N,
    GT4_CORE,
    SOAP_ENV,
    WORKSPACE,
    WSA,
    WSSE,
    WSU,
    X509_PKIPATH,
    X509V3,
)
from vws.xmlparse import parse_canonical

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
# A hash's name (as [security] signature_hashes lists it) -> (its RSA signature method, its digest method).
HASH_METHODS = {
    "sha1": (RSA_SHA1, SHA1),
    "sha256": (RSA_SHA256, SHA256),
    "sha384": (RSA_SHA384, SHA384),
    "sha512": (RSA_SHA512, SHA512),
}
_ALGORITHMS = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
_HASHES = {method: _ALGORITHMS[name] for name, pair in HASH_METHODS.items() for method in pair}
SHA2_FAMILY = ("sha256", "sha384", "sha512")

# Every attribute some XML-DSig implementation resolves "#x" against: their values must be unique together.
_ID_ATTRIBUTES = etree.XPath("//@wsu:Id | //@Id | //@ID | //@id | //@xml:id", namespaces={"wsu": WSU})

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


REPLAYED = "replayed message: this signature was already accepted"


def methods(hash_names: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(signature methods, digest methods) using the named hashes; ValueError names an unknown one."""
    unknown = sorted(set(hash_names) - set(HASH_METHODS))
    if unknown:
        raise ValueError(f"unknown signature hash {', '.join(unknown)} (known: {', '.join(HASH_METHODS)})")
    return frozenset(HASH_METHODS[n][0] for n in hash_names), frozenset(HASH_METHODS[n][1] for n in hash_names)


_SHA2_SIGNATURES, _SHA2_DIGESTS = methods(SHA2_FAMILY)


@dataclass(frozen=True)
class SecurityPolicy:
    # SHA-1 is no longer collision resistant: only an administrator enables it, for old clients.
    signature_methods: frozenset[str] = _SHA2_SIGNATURES
    digest_methods: frozenset[str] = _SHA2_DIGESTS
    require_addressing: bool = True  # every WS-Addressing header present must be signed
    # every resource key too: headers in a workspace namespace, and ws-core's (the SubscriptionKey)
    require_workspace_headers: bool = True
    skew: timedelta = timedelta(seconds=300)
    # The longest a Timestamp is believed after its Created, whatever its Expires says: this also bounds
    # how long the replay cache must remember a signature.
    max_age: timedelta = timedelta(seconds=300)

    def must_sign(self, header_block: etree._Element) -> bool:
        namespace = etree.QName(header_block).namespace or ""
        if self.require_addressing and namespace == WSA:
            return True
        return self.require_workspace_headers and (namespace.startswith(WORKSPACE) or namespace == GT4_CORE)


DEFAULT_POLICY = SecurityPolicy()


class SeenSignatures(Protocol):
    def admit(self, key: bytes, until: datetime) -> bool:
        """True the first time ``key`` (a signature value) is offered before ``until``; False for every repeat."""


class ReplayCache:
    """Signature values seen, in memory, each kept until its message could no longer be accepted anyway.

    Enough for a client checking replies. The service also records the messages that change
    something in the store, so that a restart does not forget them (vws.soap.replay).
    """

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
    body: etree._Element  # the envelope's real soapenv:Body, as digested (see the module docstring)
    signed_headers: tuple[etree._Element, ...]  # real header blocks the signature covers, as digested, in order
    created: datetime
    expires: datetime
    signature_method: str
    signature_value: bytes  # what the replay cache remembers
    replayable_until: datetime  # the last instant (skew included) at which the message could be accepted

    @property
    def identity(self) -> str:
        return self.chain.identity

    @property
    def limited(self) -> bool:
        return self.chain.limited


# -- envelopes -----------------------------------------------------------------------------------


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
    """The header blocks ``policy`` wants signed (WS-Addressing, resource keys), in document order."""
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


def read_pki_path(data: bytes) -> tuple[bytes, ...]:
    """The DER certificates of a PkiPath, leaf first."""
    return tuple(reversed(der.sequence_of(data)))


def claimed_signer(envelope: etree._Element) -> str | None:
    """The subject of the certificate a message's first security token holds, *not* verified: for logs only."""
    try:
        header, _ = envelope_parts(envelope)
        token = next(next(b for b in header_blocks(header) if b.tag == _SECURITY).iterchildren(_BST))
        data = _b64(token.text, "BinarySecurityToken")
        leaf = data if token.get("ValueType") == X509V3 else read_pki_path(data)[0]
        return oneline(x509.load_der_x509_certificate(leaf).subject)
    except (SignatureRefused, StopIteration, IndexError, ValueError):
        return None


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
            raise ValueError("only RSA credentials can sign (RSA-SHA256 and its kin)")
        if signature_method not in _HASHES or digest_method not in _HASHES:
            raise ValueError("unsupported signature or digest method")
        self.credential = credential
        self.clock = clock
        self.signature_method = signature_method
        self.digest_method = digest_method
        self.lifetime = lifetime
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

        security = etree.Element(_SECURITY, nsmap={"wsse": WSSE, "wsu": WSU})
        security.set(_MUST_UNDERSTAND, "1")
        header.insert(0, security)
        stamp = self._timestamp(security)
        token_id = self._binary_token(security)
        targets = {id(element): element for element in (body, stamp, *extra)}  # each once, in this order
        self._signature(security, targets.values(), token_id)
        return envelope

    def _timestamp(self, security: etree._Element) -> etree._Element:
        now = self.clock.now()
        stamp = etree.SubElement(security, _TIMESTAMP)
        stamp.set(_WSU_ID, _new_id("TS"))
        etree.SubElement(stamp, _CREATED).text = timestamp(now)
        etree.SubElement(stamp, _EXPIRES).text = timestamp(now + self.lifetime)
        return stamp

    def _binary_token(self, security: etree._Element) -> str:
        token = etree.SubElement(security, _BST, EncodingType=BASE64_BINARY, ValueType=self._token_type)
        token.set(_WSU_ID, _new_id("X509"))
        token.text = self._token
        return token.get(_WSU_ID)

    def _signature(self, security: etree._Element, targets: Iterable[etree._Element], token_id: str) -> None:
        signature = etree.SubElement(security, _SIGNATURE, nsmap={"ds": DS})
        signature.set("Id", _new_id("SIG"))
        signed_info = etree.SubElement(signature, _SIGNED_INFO)
        etree.SubElement(signed_info, _C14N_METHOD, Algorithm=EXC_C14N)
        etree.SubElement(signed_info, _SIG_METHOD, Algorithm=self.signature_method)
        for element in targets:
            self._reference(signed_info, element)
        value = self.credential.key.sign(_c14n(signed_info), padding.PKCS1v15(), _HASHES[self.signature_method]())
        etree.SubElement(signature, _SIGNATURE_VALUE).text = base64.b64encode(value).decode()
        key_info = etree.SubElement(signature, _KEY_INFO)
        reference = etree.SubElement(etree.SubElement(key_info, _STR), _STR_REF, URI="#" + token_id)
        reference.set("ValueType", self._token_type)

    def _reference(self, signed_info: etree._Element, element: etree._Element) -> None:
        is_body = element.tag == _BODY
        ref = etree.SubElement(signed_info, _REFERENCE, URI="#" + _ensure_id(element, "Body" if is_body else "H"))
        transform = etree.SubElement(etree.SubElement(ref, _TRANSFORMS), _TRANSFORM, Algorithm=EXC_C14N)
        # QName text lives in bodies (property names, queries, topics); headers carry keys and URIs.
        inclusive = text_prefixes(element) if is_body else []
        if inclusive:
            etree.SubElement(transform, _INCLUSIVE_NS, PrefixList=" ".join(inclusive), nsmap={"ec": EXC_C14N})
            # lxml hands c14n only the prefixes its document dictionary holds, which a tree built in code
            # may lack: the parsed copy (with every in-scope declaration) has them all.
            (element,) = parse_canonical(etree.tostring(element, with_tail=False))
        etree.SubElement(ref, _DIGEST_METHOD, Algorithm=self.digest_method)
        digest = _digest(_c14n(element, inclusive), self.digest_method)
        etree.SubElement(ref, _DIGEST_VALUE).text = base64.b64encode(digest).decode()


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
    prefixes = (inclusive[0].get("PrefixList") or "").split()
    if "#default" in prefixes:  # lxml's c14n would drop it silently, and the digest fail for no clear reason
        raise SignatureRefused("an InclusiveNamespaces PrefixList naming #default is not supported")
    return prefixes or None


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


def _id_index(envelope: etree._Element) -> dict[str, etree._Element]:
    """Id value -> element, refusing any value that occurs twice (the root of most wrapping attacks)."""
    ids: dict[str, etree._Element] = {}
    for value in _ID_ATTRIBUTES(envelope):
        if value in ids:
            raise SignatureRefused(f"the Id {str(value)!r} occurs more than once in the envelope")
        ids[str(value)] = value.getparent()
    return ids


def _security_header(blocks: Sequence[etree._Element]) -> etree._Element:
    securities = [block for block in blocks if block.tag == _SECURITY]
    if not securities:
        raise SignatureRefused("the message is not signed: it has no wsse:Security header")
    if len(securities) > 1:
        raise SignatureRefused("more than one wsse:Security header")
    return securities[0]


def _the_signature(envelope: etree._Element, security: etree._Element) -> etree._Element:
    """The one ds:Signature of the envelope, a child of the Security header: a second one anywhere is refused."""
    signatures = list(envelope.iter(_SIGNATURE))
    if not signatures:
        raise SignatureRefused("the message is not signed: wsse:Security holds no ds:Signature")
    if len(signatures) > 1:
        raise SignatureRefused(f"the envelope holds {len(signatures)} ds:Signature elements; exactly one is accepted")
    if signatures[0].getparent() is not security:
        raise SignatureRefused("the ds:Signature is not a child of the wsse:Security header")
    return signatures[0]


def _the_timestamp(envelope: etree._Element, security: etree._Element) -> etree._Element:
    if sum(1 for _ in envelope.iter(_TIMESTAMP)) != 1:
        raise SignatureRefused("exactly one wsu:Timestamp is required, in the wsse:Security header")
    return _one(security, _TIMESTAMP, "wsse:Security")


@dataclass(frozen=True)
class _Reference:
    target: etree._Element
    digest_method: str
    digest: bytes
    prefixes: list[str] | None


def _check_digest(ref: _Reference) -> bytes:
    """The canonical form of ``ref``'s target, once its digest matches."""
    canonical = _c14n(ref.target, ref.prefixes)
    if not hmac.compare_digest(_digest(canonical, ref.digest_method), ref.digest):
        raise SignatureRefused(f"the digest of {ref.target.tag} does not match: the element was changed after signing")
    return canonical


_ACCEPTED = " (the hashes accepted are the service's [security] signature_hashes)"


class MessageVerifier:
    def __init__(
        self,
        trust: TrustStore | ChainValidator,
        clock: Clock,
        policy: SecurityPolicy = DEFAULT_POLICY,
        replay_cache: SeenSignatures | None = None,
    ) -> None:
        """``trust``: a TrustStore, or a ChainValidator to share its cache and untrusted certificates."""
        self.validator = trust if isinstance(trust, ChainValidator) else ChainValidator(trust, clock)
        self.clock = clock
        self.policy = policy
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache(clock)

    def verify(self, envelope: etree._Element) -> VerifiedMessage:
        """The verified message, or SignatureRefused / UntrustedChain (both AuthenticationFailed)."""
        header, body = envelope_parts(envelope)
        blocks = header_blocks(header)
        security = _security_header(blocks)
        signature = _the_signature(envelope, security)
        stamp = _the_timestamp(envelope, security)
        ids = _id_index(envelope)
        created, expires, deadline = self._check_freshness(stamp)
        signed_info = _one(signature, _SIGNED_INFO, "ds:Signature")
        signature_method, c14n_prefixes = self._check_methods(signed_info)
        chain = self.validator.validate_der(self._token_chain(signature, security, ids))

        # What the signer may legitimately have signed: the real Body, Timestamp, tokens and header blocks.
        # Held by identity; the dict keeps each element alive, so no id() can be reused meanwhile.
        others = [block for block in blocks if block is not security]
        signable = [body, stamp, *others, *security.iterchildren(_BST)]
        references = self._references(signed_info, ids, {id(element): element for element in signable})
        covered = {id(ref.target) for ref in references}
        self._check_coverage(covered, body, stamp, others)

        value = self._check_signature_value(signature, signed_info, c14n_prefixes, signature_method, chain)
        digested = {id(ref.target): _check_digest(ref) for ref in references}
        replayable_until = deadline + self.policy.skew
        if not self.replay_cache.admit(value, replayable_until):
            raise SignatureRefused(REPLAYED)
        signed = [block for block in others if id(block) in covered]  # in document order
        body_as_digested, *headers_as_digested = parse_canonical(
            digested[id(body)], *(digested[id(block)] for block in signed)
        )
        return VerifiedMessage(
            chain=chain,
            body=body_as_digested,
            signed_headers=tuple(headers_as_digested),
            created=created,
            expires=expires or deadline,
            signature_method=signature_method,
            signature_value=value,
            replayable_until=replayable_until,
        )

    def _check_freshness(self, stamp: etree._Element) -> tuple[datetime, datetime | None, datetime]:
        """(Created, Expires, the instant after which, plus skew, it is no longer believed): WS-Security 1.0 10."""
        policy, now = self.policy, self.clock.now()
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
        deadline = created + policy.max_age if expires is None else min(created + policy.max_age, expires)
        if now > deadline + policy.skew:
            raise SignatureRefused(f"wsu:Timestamp is stale: created {created.isoformat()}, now {now.isoformat()}")
        return created, expires, deadline

    def _check_methods(self, signed_info: etree._Element) -> tuple[str, list[str] | None]:
        """(signature method, c14n inclusive prefixes), once both algorithms pass the policy."""
        c14n_method = _one(signed_info, _C14N_METHOD, "ds:SignedInfo")
        if c14n_method.get("Algorithm") != EXC_C14N:
            raise SignatureRefused(
                f"canonicalization {c14n_method.get('Algorithm')} is not allowed (exclusive c14n only)"
            )
        signature_method = _one(signed_info, _SIG_METHOD, "ds:SignedInfo").get("Algorithm")
        if signature_method not in self.policy.signature_methods:
            raise SignatureRefused(f"signature method {signature_method} is not allowed{_ACCEPTED}")
        return signature_method, _prefix_list(c14n_method)

    @staticmethod
    def _token_chain(
        signature: etree._Element, security: etree._Element, ids: dict[str, etree._Element]
    ) -> tuple[bytes, ...]:
        """The DER chain (leaf first) of the BinarySecurityToken in this Security header that KeyInfo names."""
        key_info = _one(signature, _KEY_INFO, "ds:Signature")
        token_ref = _one(_one(key_info, _STR, "ds:KeyInfo"), _STR_REF, "wsse:SecurityTokenReference")
        uri = token_ref.get("URI") or ""
        token = ids.get(uri[1:]) if uri.startswith("#") else None
        if token is None or token.tag != _BST or token.getparent() is not security:
            raise SignatureRefused(f"KeyInfo {uri!r} does not name a BinarySecurityToken in the wsse:Security header")
        if token.get("EncodingType") not in (None, BASE64_BINARY):
            raise SignatureRefused(f"BinarySecurityToken encoding {token.get('EncodingType')} is not supported")
        data = _b64(token.text, "BinarySecurityToken")
        value_type = token.get("ValueType")
        if value_type == X509V3:
            return (data,)
        if value_type != X509_PKIPATH:
            raise SignatureRefused(f"BinarySecurityToken ValueType {value_type} is not supported")
        try:
            return read_pki_path(data)
        except ValueError as exc:
            raise SignatureRefused(f"BinarySecurityToken does not hold a PkiPath: {exc}") from None

    def _references(
        self, signed_info: etree._Element, ids: dict[str, etree._Element], signable: dict[int, etree._Element]
    ) -> list[_Reference]:
        """Each ds:Reference resolved to one signable element of this envelope, each element at most once."""
        references: list[_Reference] = []
        seen: set[int] = set()
        for ref in signed_info.iterchildren(_REFERENCE):
            uri = ref.get("URI")
            if uri is None or not uri.startswith("#") or len(uri) < 2:
                raise SignatureRefused(f"reference URI {uri!r} is not a same-document '#Id' reference")
            target = ids.get(uri[1:])
            if target is None:
                raise SignatureRefused(f"reference {uri} resolves to no element of the envelope")
            if signable.get(id(target)) is not target:
                raise SignatureRefused(
                    f"reference {uri} resolves to {target.tag}, which is not the envelope's Body, "
                    "Timestamp, security token or a header block (signature wrapping?)"
                )
            if id(target) in seen:
                raise SignatureRefused(f"{target.tag} is referenced twice")
            seen.add(id(target))
            references.append(self._reference(ref, uri, target))
        if not references:
            raise SignatureRefused("ds:SignedInfo has no ds:Reference")
        return references

    def _reference(self, ref: etree._Element, uri: str, target: etree._Element) -> _Reference:
        transforms = [t for t in _one(ref, _TRANSFORMS, "ds:Reference") if isinstance(t.tag, str)]
        if len(transforms) != 1 or transforms[0].tag != _TRANSFORM or transforms[0].get("Algorithm") != EXC_C14N:
            raise SignatureRefused(f"reference {uri}: only a single exclusive-c14n transform is accepted")
        digest_method = _one(ref, _DIGEST_METHOD, "ds:Reference").get("Algorithm")
        if digest_method not in self.policy.digest_methods:
            raise SignatureRefused(f"digest method {digest_method} is not allowed{_ACCEPTED}")
        digest = _b64(_one(ref, _DIGEST_VALUE, "ds:Reference").text, "DigestValue")
        return _Reference(target, digest_method, digest, _prefix_list(transforms[0]))

    def _check_coverage(
        self, covered: set[int], body: etree._Element, stamp: etree._Element, blocks: Sequence[etree._Element]
    ) -> None:
        if id(body) not in covered:
            raise SignatureRefused("the signature does not cover the soapenv:Body")
        if id(stamp) not in covered:
            raise SignatureRefused("the signature does not cover the wsu:Timestamp")
        for block in blocks:
            if self.policy.must_sign(block) and id(block) not in covered:
                raise SignatureRefused(f"the signature does not cover the {block.tag} header")

    @staticmethod
    def _check_signature_value(
        signature: etree._Element,
        signed_info: etree._Element,
        prefixes: list[str] | None,
        method: str,
        chain: ValidatedChain,
    ) -> bytes:
        value = _b64(_one(signature, _SIGNATURE_VALUE, "ds:Signature").text, "SignatureValue")
        public_key = chain.leaf.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SignatureRefused("the signer's key is not an RSA key")
        try:
            public_key.verify(value, _c14n(signed_info, prefixes), padding.PKCS1v15(), _HASHES[method]())
        except InvalidSignature:
            raise SignatureRefused(f"the signature value does not verify with the key of {chain.subject}") from None
        return value
