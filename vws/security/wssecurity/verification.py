"""Verification (``MessageVerifier``) is written out rather than delegated to a
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

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from vws.clock import Clock, utc
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator, ValidatedChain
from vws.security.wssecurity.envelope import (
    BST,
    C14N_METHOD,
    CREATED,
    DIGEST_METHOD,
    DIGEST_VALUE,
    EXPIRES,
    INCLUSIVE_NS,
    KEY_INFO,
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
    SignatureRefused,
    c14n,
    decode_b64,
    envelope_parts,
    header_blocks,
    read_pki_path,
)
from vws.security.wssecurity.policy import DEFAULT_POLICY, HASHES, SecurityPolicy, digest_of
from vws.security.wssecurity.replay import REPLAYED, ReplayCache, SeenSignatures
from vws.xmlns import (
    BASE64_BINARY,
    EXC_C14N,
    WSU,
    X509_PKIPATH,
    X509V3,
)
from vws.xmlparse import parse_canonical

# Every attribute some XML-DSig implementation resolves "#x" against: their values must be unique together.
_ID_ATTRIBUTES = etree.XPath("//@wsu:Id | //@Id | //@ID | //@id | //@xml:id", namespaces={"wsu": WSU})


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


def _one(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = [child for child in parent if child.tag == tag]
    if len(found) != 1:
        raise SignatureRefused(f"{what}: expected exactly one {etree.QName(tag).localname}, found {len(found)}")
    return found[0]


def _prefix_list(parent: etree._Element) -> list[str] | None:
    inclusive = [child for child in parent if child.tag == INCLUSIVE_NS]
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


def _id_index(envelope: etree._Element) -> dict[str, etree._Element]:
    """Id value -> element, refusing any value that occurs twice (the root of most wrapping attacks)."""
    ids: dict[str, etree._Element] = {}
    for value in _ID_ATTRIBUTES(envelope):
        if value in ids:
            raise SignatureRefused(f"the Id {str(value)!r} occurs more than once in the envelope")
        ids[str(value)] = value.getparent()
    return ids


def _security_header(blocks: Sequence[etree._Element]) -> etree._Element:
    securities = [block for block in blocks if block.tag == SECURITY]
    if not securities:
        raise SignatureRefused("the message is not signed: it has no wsse:Security header")
    if len(securities) > 1:
        raise SignatureRefused("more than one wsse:Security header")
    return securities[0]


def _the_signature(envelope: etree._Element, security: etree._Element) -> etree._Element:
    """The one ds:Signature of the envelope, a child of the Security header: a second one anywhere is refused."""
    signatures = list(envelope.iter(SIGNATURE))
    if not signatures:
        raise SignatureRefused("the message is not signed: wsse:Security holds no ds:Signature")
    if len(signatures) > 1:
        raise SignatureRefused(f"the envelope holds {len(signatures)} ds:Signature elements; exactly one is accepted")
    if signatures[0].getparent() is not security:
        raise SignatureRefused("the ds:Signature is not a child of the wsse:Security header")
    return signatures[0]


def _the_timestamp(envelope: etree._Element, security: etree._Element) -> etree._Element:
    if sum(1 for _ in envelope.iter(TIMESTAMP)) != 1:
        raise SignatureRefused("exactly one wsu:Timestamp is required, in the wsse:Security header")
    return _one(security, TIMESTAMP, "wsse:Security")


@dataclass(frozen=True)
class _Reference:
    target: etree._Element
    digest_method: str
    digest: bytes
    prefixes: list[str] | None


def _check_digest(ref: _Reference) -> bytes:
    """The canonical form of ``ref``'s target, once its digest matches."""
    canonical = c14n(ref.target, ref.prefixes)
    if not hmac.compare_digest(digest_of(canonical, ref.digest_method), ref.digest):
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
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache(clock, policy.replay_window)

    def verify(self, envelope: etree._Element) -> VerifiedMessage:
        """The verified message, or SignatureRefused / UntrustedChain (both AuthenticationFailed)."""
        header, body = envelope_parts(envelope)
        blocks = header_blocks(header)
        security = _security_header(blocks)
        signature = _the_signature(envelope, security)
        stamp = _the_timestamp(envelope, security)
        ids = _id_index(envelope)
        created, expires, deadline = self._check_freshness(stamp)
        signed_info = _one(signature, SIGNED_INFO, "ds:Signature")
        signature_method, c14n_prefixes = self._check_methods(signed_info)
        chain = self.validator.validate_der(self._token_chain(signature, security, ids))

        # What the signer may legitimately have signed: the real Body, Timestamp, tokens and header blocks.
        # Held by identity; the dict keeps each element alive, so no id() can be reused meanwhile.
        others = [block for block in blocks if block is not security]
        signable = [body, stamp, *others, *security.iterchildren(BST)]
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
        created = _parse_time(stamp.find(CREATED), "Created")
        expires = _parse_time(stamp.find(EXPIRES), "Expires")
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
        c14n_method = _one(signed_info, C14N_METHOD, "ds:SignedInfo")
        if c14n_method.get("Algorithm") != EXC_C14N:
            raise SignatureRefused(
                f"canonicalization {c14n_method.get('Algorithm')} is not allowed (exclusive c14n only)"
            )
        signature_method = _one(signed_info, SIG_METHOD, "ds:SignedInfo").get("Algorithm")
        if signature_method not in self.policy.signature_methods:
            raise SignatureRefused(f"signature method {signature_method} is not allowed{_ACCEPTED}")
        return signature_method, _prefix_list(c14n_method)

    @staticmethod
    def _token_chain(
        signature: etree._Element, security: etree._Element, ids: dict[str, etree._Element]
    ) -> tuple[bytes, ...]:
        """The DER chain (leaf first) of the BinarySecurityToken in this Security header that KeyInfo names."""
        key_info = _one(signature, KEY_INFO, "ds:Signature")
        token_ref = _one(_one(key_info, STR, "ds:KeyInfo"), STR_REF, "wsse:SecurityTokenReference")
        uri = token_ref.get("URI") or ""
        token = ids.get(uri[1:]) if uri.startswith("#") else None
        if token is None or token.tag != BST or token.getparent() is not security:
            raise SignatureRefused(f"KeyInfo {uri!r} does not name a BinarySecurityToken in the wsse:Security header")
        if token.get("EncodingType") not in (None, BASE64_BINARY):
            raise SignatureRefused(f"BinarySecurityToken encoding {token.get('EncodingType')} is not supported")
        data = decode_b64(token.text, "BinarySecurityToken")
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
        for ref in signed_info.iterchildren(REFERENCE):
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
        transforms = [t for t in _one(ref, TRANSFORMS, "ds:Reference") if isinstance(t.tag, str)]
        if len(transforms) != 1 or transforms[0].tag != TRANSFORM or transforms[0].get("Algorithm") != EXC_C14N:
            raise SignatureRefused(f"reference {uri}: only a single exclusive-c14n transform is accepted")
        digest_method = _one(ref, DIGEST_METHOD, "ds:Reference").get("Algorithm")
        if digest_method not in self.policy.digest_methods:
            raise SignatureRefused(f"digest method {digest_method} is not allowed{_ACCEPTED}")
        digest = decode_b64(_one(ref, DIGEST_VALUE, "ds:Reference").text, "DigestValue")
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
        value = decode_b64(_one(signature, SIGNATURE_VALUE, "ds:Signature").text, "SignatureValue")
        public_key = chain.leaf.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SignatureRefused("the signer's key is not an RSA key")
        try:
            public_key.verify(value, c14n(signed_info, prefixes), padding.PKCS1v15(), HASHES[method]())
        except InvalidSignature:
            raise SignatureRefused(f"the signature value does not verify with the key of {chain.subject}") from None
        return value
