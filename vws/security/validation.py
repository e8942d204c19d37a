"""RFC 3820 path validation of a presented chain (proxies, end entity, CAs) against a TrustStore.

``cryptography``'s verifier knows only WebPKI and refuses proxy chains; ``openssl
verify -allow_proxy_certs`` accepts limited proxies and knows no signing
policies. So the rules are written out here, each refusal naming the rule:

- every certificate is signed by the next one (or by a trusted CA) and is inside
  its validity window at the injected clock's now, trusted CAs included;
- CAs have basicConstraints CA:TRUE, keyCertSign when keyUsage is present, and
  their pathLenConstraint is respected; end entities and proxies are not CAs;
- a trusted CA's ``.signing_policy`` must allow the subject it signed;
- a certificate revoked by a CRL of its trusted issuer is refused; an expired CRL too;
- a proxy has a *critical* ProxyCertInfo (3.8), its subject is its issuer's
  subject plus exactly one single-valued CN (3.4), it has no CA bit (3.7), no
  alternative names (3.2, 3.5), digitalSignature and no keyCertSign when keyUsage
  is present (3.6); its issuer is an end entity or a proxy whose keyUsage, if
  present, allows digitalSignature (3.1); every pCPathLenConstraint bounds the
  proxies beneath it (4.1.3);
- a chain containing a limited proxy is limited (impersonation beneath limited
  stays limited); independent and unknown proxy policies are refused.

The chain is read leaf first and ends at the first certificate the trust store
holds (a presented copy of a trusted CA). When its top is neither a trusted CA
nor issued by one, certificates given as ``untrusted`` may complete it, as
``openssl verify -untrusted`` does: a sender that ships only its proxy leaf
(zeep's stock BinarySignature) validates when the service knows its end entity.

The identity of a chain is its end-entity subject in OpenSSL oneline form; a chain
holding a subject whose oneline form is ambiguous (``credentials.identity``) is refused,
so the identity, signing policies and grid-mapfile lines read one name one way.
Results are cached by chain DER until the chain, a trusted CA or a CRL leaves
its validity window, or the trust directory changes (looked at once a second of
the injected clock, not on every message).
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from vws.clock import Clock
from vws.errors import AuthenticationFailed
from vws.security.credentials import AmbiguousName, identity, oneline
from vws.security.proxy import (
    INDEPENDENT,
    INHERIT_ALL,
    LIMITED,
    PROXY_CERT_INFO,
    PROXY_CERT_INFO_DRAFT,
    ProxyCertInfo,
)
from vws.security.trust import TrustAnchor, TrustStore

MAX_CHAIN = 16
TRUST_RECHECK = timedelta(seconds=1)

Window = tuple[datetime, datetime]


class UntrustedChain(AuthenticationFailed):
    """The presented certificate chain does not validate."""


@dataclass(frozen=True)
class ValidatedChain:
    identity: str  # end-entity subject, /O=Grid/OU=.../CN=Jane Doe
    limited: bool
    chain: tuple[x509.Certificate, ...]  # as validated, leaf first, up to (not including) the trusted CA
    end_entity: x509.Certificate
    proxies: int  # how many proxy certificates precede the end entity
    not_before: datetime  # the window inside which every certificate and CRL on the path is valid
    not_after: datetime

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def subject(self) -> str:
        return oneline(self.chain[0].subject)


# -- reading certificates ---------------------------------------------------------------------------


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _load(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise UntrustedChain(f"a presented certificate cannot be read: {exc}") from None


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca


def _has_ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    return any(ext.oid == oid for ext in cert.extensions)


def _proxy_info(cert: x509.Certificate) -> tuple[ProxyCertInfo, bool] | None:
    for ext in cert.extensions:
        if ext.oid == PROXY_CERT_INFO:
            try:
                return ProxyCertInfo.from_der(ext.value.value), ext.critical
            except ValueError as exc:
                raise UntrustedChain(f"malformed ProxyCertInfo in {oneline(cert.subject)}: {exc}") from None
    return None


def _check_validity(cert: x509.Certificate, now: datetime, what: str = "certificate") -> Window:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        raise UntrustedChain(f"{what} {oneline(cert.subject)} is not valid before {start.isoformat()}")
    if now > end:
        raise UntrustedChain(f"{what} {oneline(cert.subject)} expired at {end.isoformat()}")
    return start, end


def _check_signature(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    if cert.issuer != issuer.subject:
        raise UntrustedChain(
            f"{oneline(cert.subject)} names issuer {oneline(cert.issuer)}, but the next certificate is "
            f"{oneline(issuer.subject)}"
        )
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise UntrustedChain(
            f"the signature on {oneline(cert.subject)} does not verify with the key of {oneline(issuer.subject)}"
            + (f" ({exc})" if str(exc) else "")
        ) from None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        _check_signature(cert, issuer)
    except UntrustedChain:
        return False
    return True


def _check_names(path: Sequence[x509.Certificate]) -> None:
    for cert in path:
        try:
            identity(cert.subject)
        except AmbiguousName as ambiguous:
            raise UntrustedChain(str(ambiguous)) from None


# -- the proxy rules (RFC 3820) ---------------------------------------------------------------------


def _check_proxy_name(proxy: x509.Certificate, issuer: x509.Certificate) -> None:
    """3.4: the subject is the issuer's subject plus exactly one single-valued CN."""
    name = oneline(proxy.subject)
    issuer_rdns, rdns = list(issuer.subject.rdns), list(proxy.subject.rdns)
    extends = rdns[: len(issuer_rdns)] == issuer_rdns
    added = len(rdns) - len(issuer_rdns)
    if extends and added > 1:
        raise UntrustedChain(f"proxy {name} adds {added} RDNs to its issuer's subject; exactly one CN is allowed")
    if not extends or added != 1:
        raise UntrustedChain(f"proxy subject {name} does not extend its issuer's subject {oneline(issuer.subject)}")
    last = list(rdns[-1])
    if len(last) != 1 or last[0].oid != NameOID.COMMON_NAME:
        raise UntrustedChain(f"proxy {name}: the RDN added to the issuer's subject must be a single CN")


def _check_proxy_extensions(proxy: x509.Certificate, critical: bool) -> None:
    name = oneline(proxy.subject)
    if not critical:
        raise UntrustedChain(f"proxy {name}: ProxyCertInfo must be critical (RFC 3820 3.8)")
    if _is_ca(proxy):
        raise UntrustedChain(f"proxy {name} has basicConstraints CA:TRUE (RFC 3820 3.7)")
    usage = _extension(proxy, x509.KeyUsage)
    if usage is not None and (not usage.digital_signature or usage.key_cert_sign):
        raise UntrustedChain(f"proxy {name}: keyUsage must allow digitalSignature and not keyCertSign (RFC 3820 3.6)")
    for oid in (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.ISSUER_ALTERNATIVE_NAME):
        if _has_ext(proxy, oid):
            raise UntrustedChain(f"proxy {name} carries an alternative name (RFC 3820 3.2, 3.5)")


def _check_proxy_issuer(proxy: x509.Certificate, issuer: x509.Certificate) -> None:
    """3.1: an end entity or a proxy signs proxies, and only with a key meant for signatures."""
    if _is_ca(issuer):
        raise UntrustedChain(f"proxy {oneline(proxy.subject)} was issued by the CA {oneline(issuer.subject)}")
    usage = _extension(issuer, x509.KeyUsage)
    if usage is not None and not usage.digital_signature:
        raise UntrustedChain(
            f"{oneline(issuer.subject)} signed a proxy, but its keyUsage lacks digitalSignature (RFC 3820 3.1)"
        )


def _is_limited(proxy: x509.Certificate, info: ProxyCertInfo) -> bool:
    if info.policy_language == LIMITED:
        return True
    if info.policy_language == INHERIT_ALL:
        return False
    name = oneline(proxy.subject)
    if info.policy_language == INDEPENDENT:
        raise UntrustedChain(f"proxy {name} is an independent proxy, which carries no identity here")
    raise UntrustedChain(f"proxy {name} has unknown policy language {info.policy_language}")


def _check_proxies(path: Sequence[x509.Certificate], infos: Sequence[tuple[ProxyCertInfo, bool]]) -> bool:
    """Every proxy of ``path`` (leaf first, its end entity last) against its issuer; True when one is limited."""
    limited = False
    for beneath, ((info, critical), (proxy, issuer)) in enumerate(zip(infos, pairwise(path), strict=True)):
        _check_proxy_extensions(proxy, critical)
        _check_proxy_issuer(proxy, issuer)
        _check_proxy_name(proxy, issuer)
        if info.path_length is not None and beneath > info.path_length:
            raise UntrustedChain(
                f"proxy {oneline(proxy.subject)} allows {info.path_length} further proxies but {beneath} follow it"
            )
        limited |= _is_limited(proxy, info)
        _check_signature(proxy, issuer)
    return limited


# -- the CA rules (RFC 5280) ------------------------------------------------------------------------


def _check_ca(ca: x509.Certificate, intermediates_beneath: int) -> None:
    name = oneline(ca.subject)
    constraints = _extension(ca, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise UntrustedChain(f"{name} signs certificates but is not a CA (basicConstraints)")
    usage = _extension(ca, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise UntrustedChain(f"CA {name}: keyUsage lacks keyCertSign")
    if constraints.path_length is not None and intermediates_beneath > constraints.path_length:
        raise UntrustedChain(f"CA {name}: path length {constraints.path_length} exceeded")


def _end_entity_index(path: Sequence[x509.Certificate], infos: Sequence[tuple[ProxyCertInfo, bool] | None]) -> int:
    """Proxies come first; the first certificate without ProxyCertInfo is the end entity."""
    index = next((i for i, info in enumerate(infos) if info is None), None)
    if index is None:
        raise UntrustedChain(
            "the chain holds only proxy certificates: its end-entity certificate is missing "
            "(send the whole chain, as an X509PKIPathv1 token does)"
        )
    for cert, info in zip(path[index:], infos[index:], strict=True):
        if info is not None:
            raise UntrustedChain(f"proxy {oneline(cert.subject)} appears above the end entity")
        if _has_ext(cert, PROXY_CERT_INFO_DRAFT):
            raise UntrustedChain(f"{oneline(cert.subject)} is a pre-RFC 3820 (draft OID) proxy, which is not accepted")
    end_entity = path[index]
    if _is_ca(end_entity) and index > 0:
        raise UntrustedChain(f"a proxy was signed by the CA certificate {oneline(end_entity.subject)}")
    if _is_ca(end_entity):
        raise UntrustedChain(f"{oneline(end_entity.subject)} is a CA certificate, not an end entity")
    return index


def _check_issued_path(path: Sequence[x509.Certificate]) -> int:
    """The end entity and presented intermediate CAs (``path``, end entity first): each signed by the next.

    Returns how many of the intermediates count against the anchor's pathLenConstraint
    (RFC 5280 6.1.4 (l): self-issued certificates do not).
    """
    intermediates = 0
    for cert, issuer in pairwise(path):
        if not _is_ca(issuer):
            raise UntrustedChain(
                f"{oneline(cert.subject)} has no ProxyCertInfo yet was issued by the non-CA "
                f"{oneline(issuer.subject)} (a proxy without ProxyCertInfo?)"
            )
        _check_ca(issuer, intermediates_beneath=intermediates)
        _check_signature(cert, issuer)
        intermediates += issuer.subject != issuer.issuer
    return intermediates


def _check_policy_and_crls(cert: x509.Certificate, anchor: TrustAnchor, now: datetime) -> datetime | None:
    """The signing policy and CRLs of ``anchor`` on ``cert``; the earliest CRL nextUpdate, if any."""
    name = oneline(cert.subject)
    if anchor.policy is not None and not anchor.policy.allows(name):
        raise UntrustedChain(f"the signing policy of {anchor.dn} does not allow it to sign {name}")
    until = None
    for crl in anchor.crls:
        if not crl.is_signature_valid(anchor.certificate.public_key()):
            raise UntrustedChain(f"the CRL of {anchor.dn} has a bad signature")
        if crl.next_update_utc is not None:
            if now > crl.next_update_utc:
                raise UntrustedChain(f"the CRL of {anchor.dn} expired at {crl.next_update_utc.isoformat()}")
            until = crl.next_update_utc if until is None else min(until, crl.next_update_utc)
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise UntrustedChain(f"{name} (serial {cert.serial_number}) is revoked by {anchor.dn}")
    return until


# -- the validator ----------------------------------------------------------------------------------


class ChainValidator:
    def __init__(
        self,
        trust: TrustStore,
        clock: Clock,
        *,
        untrusted: Iterable[x509.Certificate] = (),
        cache_size: int = 4096,
    ) -> None:
        """``untrusted``: certificates that may complete a presented chain, trusted for nothing by themselves."""
        self.trust = trust
        self.clock = clock
        self._untrusted: dict[bytes, list[x509.Certificate]] = {}
        for cert in untrusted:
            self._untrusted.setdefault(cert.subject.public_bytes(), []).append(cert)
        self._cache: OrderedDict[tuple[bytes, ...], ValidatedChain] = OrderedDict()
        self._cache_size = cache_size
        self._generation = -1
        self._trust_checked: datetime | None = None
        self._lock = threading.Lock()

    def validate(self, chain: Sequence[x509.Certificate]) -> ValidatedChain:
        """The validated chain (leaf first), or UntrustedChain naming the first rule broken."""
        return self._cached(tuple(_der(cert) for cert in chain), lambda: tuple(chain))

    def validate_der(self, chain: Sequence[bytes]) -> ValidatedChain:
        """``validate`` for DER certificates as they arrive in a token: parsed only when not cached."""
        return self._cached(tuple(chain), lambda: tuple(_load(der) for der in chain))

    def _cached(
        self, key: tuple[bytes, ...], certificates: Callable[[], tuple[x509.Certificate, ...]]
    ) -> ValidatedChain:
        if not key:
            raise UntrustedChain("no certificate was presented")
        if len(key) > MAX_CHAIN:
            raise UntrustedChain(f"a chain of {len(key)} certificates is longer than {MAX_CHAIN}")
        now = self.clock.now()
        self._recheck_trust(now)
        with self._lock:
            if self._generation != self.trust.generation:
                self._cache.clear()
                self._generation = self.trust.generation
            hit = self._cache.get(key)
            if hit is not None and hit.not_before <= now <= hit.not_after:
                self._cache.move_to_end(key)
                return hit
        result = self._validate(certificates(), now)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _recheck_trust(self, now: datetime) -> None:
        checked = self._trust_checked
        if checked is None or not checked <= now < checked + TRUST_RECHECK:
            self._trust_checked = now
            self.trust.refresh()

    def _validate(self, chain: tuple[x509.Certificate, ...], now: datetime) -> ValidatedChain:
        path = self._complete(self._up_to_anchor(chain))
        _check_names(path)
        windows = [_check_validity(cert, now) for cert in path]
        infos = [_proxy_info(cert) for cert in path]
        if all(info is not None for info in infos) and self.trust.issuers(path[-1]):
            raise UntrustedChain(f"proxy {oneline(path[-1].subject)} was issued by the CA {oneline(path[-1].issuer)}")
        ee_index = _end_entity_index(path, infos)
        limited = _check_proxies(path[: ee_index + 1], infos[:ee_index])
        intermediates = _check_issued_path(path[ee_index:])
        anchor = self._anchor(path[-1])
        _check_ca(anchor.certificate, intermediates_beneath=intermediates)
        windows.append(_check_validity(anchor.certificate, now, "trusted CA"))
        crls_until = _check_policy_and_crls(path[-1], anchor, now)
        return ValidatedChain(
            identity=identity(path[ee_index].subject),
            limited=limited,
            chain=path,
            end_entity=path[ee_index],
            proxies=ee_index,
            not_before=max(start for start, _ in windows),
            not_after=min([end for _, end in windows] + ([crls_until] if crls_until else [])),
        )

    def _up_to_anchor(self, chain: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
        """The chain cut before the first presented copy of a trusted CA: the store's copy is the anchor."""
        for index, cert in enumerate(chain[1:], start=1):
            if self.trust.anchor_for(cert) is not None:
                return chain[:index]
        return chain

    def _complete(self, path: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
        """Append untrusted certificates while the top of ``path`` has no trusted issuer and one of them signed it."""
        while len(path) < MAX_CHAIN and not self.trust.issuers(path[-1]):
            top = path[-1]
            candidates = self._untrusted.get(top.issuer.public_bytes(), [])
            issuer = next((c for c in candidates if c not in path and _signed_by(top, c)), None)
            if issuer is None:
                break
            path += (issuer,)
        return path

    def _anchor(self, cert: x509.Certificate) -> TrustAnchor:
        candidates = self.trust.issuers(cert)
        if not candidates:
            raise UntrustedChain(
                f"{oneline(cert.subject)} was issued by {oneline(cert.issuer)}, which is not a trusted CA"
            )
        for anchor in candidates[:-1]:
            if _signed_by(cert, anchor.certificate):
                return anchor
        _check_signature(cert, candidates[-1].certificate)  # the last candidate's refusal names the failure
        return candidates[-1]
