"""What a signature must use and cover: the hashes accepted ([security] signature_hashes), the
header blocks that must be signed, how fresh a Timestamp must be."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives import hashes
from lxml import etree

from vws.security.wssecurity.envelope import SECURITY, envelope_parts, header_blocks
from vws.xmlns import (
    GT4_CORE,
    WORKSPACE,
    WSA,
)

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
HASHES = {method: _ALGORITHMS[name] for name, pair in HASH_METHODS.items() for method in pair}
SHA2_FAMILY = ("sha256", "sha384", "sha512")


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

    @property
    def replay_window(self) -> timedelta:
        """How far past now a message accepted now can be accepted again, and so how long a replay
        cache must remember it: Created may be ``skew`` ahead, its deadline ``max_age`` after, plus ``skew``."""
        return self.max_age + 2 * self.skew

    def must_sign(self, header_block: etree._Element) -> bool:
        namespace = etree.QName(header_block).namespace or ""
        if self.require_addressing and namespace == WSA:
            return True
        return self.require_workspace_headers and (namespace.startswith(WORKSPACE) or namespace == GT4_CORE)


DEFAULT_POLICY = SecurityPolicy()


def required_headers(envelope: etree._Element, policy: SecurityPolicy = DEFAULT_POLICY) -> list[etree._Element]:
    """The header blocks ``policy`` wants signed (WS-Addressing, resource keys), in document order."""
    header, _ = envelope_parts(envelope)
    return [block for block in header_blocks(header) if block.tag != SECURITY and policy.must_sign(block)]


def digest_of(data: bytes, method: str) -> bytes:
    h = hashes.Hash(HASHES[method]())
    h.update(data)
    return h.finalize()
