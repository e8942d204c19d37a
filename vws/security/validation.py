"""RFC 3820 path validation of a presented chain (proxies, end entity, CAs) against a TrustStore.

``cryptography``'s verifier knows only WebPKI and refuses proxy chains; ``openssl
verify -allow_proxy_certs`` accepts limited proxies and knows no signing
policies. So the rules are written out here, each refusal naming the rule:

- every certificate is signed by the next one (or by a trusted CA) and is inside
  its validity window at the injected clock's now, trusted CAs included;
- CAs have basicConstraints CA:TRUE, keyCertSign when keyUsage is present, and
  their pathLenConstraint is respected; end entities and proxies are not CAs;
- a trusted CA's ``.signing_policy`` must allow the subject it signed;
- a certificate revoked by a CRL of its issuer is refused; an expired CRL too;
- a proxy has a *critical* ProxyCertInfo, its subject is its issuer's subject
  plus exactly one single-valued CN, it has no CA bit, no alternative names,
  digitalSignature when keyUsage is present, its issuer is an end entity or a
  proxy, and every proxy's pCPathLenConstraint bounds the proxies beneath it;
- a chain containing a limited proxy is limited (impersonation beneath limited
  stays limited); independent and unknown proxy policies are refused.

The identity of a chain is its end-entity subject in OpenSSL oneline form.
Results are cached by chain DER until the chain leaves its validity window or the
trust directory changes.
"""

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from vws.clock import Clock
from vws.errors import AuthenticationFailed
from vws.security.credentials import oneline
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


class UntrustedChain(AuthenticationFailed):
    """The presented certificate chain does not validate."""


@dataclass(frozen=True)
class ValidatedChain:
    identity: str  # end-entity subject, /O=Grid/OU=.../CN=Jane Doe
    limited: bool
    chain: tuple[x509.Certificate, ...]  # as presented, leaf first
    end_entity: x509.Certificate
    proxies: int  # how many proxy certificates precede the end entity
    not_before: datetime  # the window inside which every certificate on the path is valid
    not_after: datetime
    anchor_dn: str

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def subject(self) -> str:
        return oneline(self.chain[0].subject)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _basic_constraints(cert)
    return bc is not None and bc.ca


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


class ChainValidator:
    def __init__(self, trust: TrustStore, clock: Clock, *, cache_size: int = 4096) -> None:
        self.trust = trust
        self.clock = clock
        self._cache: OrderedDict[tuple[bytes, ...], ValidatedChain] = OrderedDict()
        self._cache_size = cache_size
        self._generation = -1
        self._lock = threading.Lock()

    def validate(self, chain: Sequence[x509.Certificate]) -> ValidatedChain:
        """The validated chain (leaf first), or UntrustedChain naming the first rule broken."""
        if not chain:
            raise UntrustedChain("no certificate was presented")
        if len(chain) > MAX_CHAIN:
            raise UntrustedChain(f"a chain of {len(chain)} certificates is longer than {MAX_CHAIN}")
        key = tuple(_der(cert) for cert in chain)
        now = self.clock.now()
        self.trust.refresh()
        with self._lock:
            if self._generation != self.trust.generation:
                self._cache.clear()
                self._generation = self.trust.generation
            hit = self._cache.get(key)
            if hit is not None:
                if hit.not_before <= now <= hit.not_after:
                    self._cache.move_to_end(key)
                    return hit
                del self._cache[key]
        result = self._validate(tuple(chain), now)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    # -- the rules ---------------------------------------------------------------------------

    def _validate(self, chain: tuple[x509.Certificate, ...], now: datetime) -> ValidatedChain:
        # Drop a presented copy of a trusted CA at the top: the store's copy is the anchor.
        presented = list(chain)
        while len(presented) > 1 and self.trust.anchor_for(presented[-1]) is not None:
            presented.pop()
        windows: list[tuple[datetime, datetime]] = []
        for cert in presented:
            windows.append(self._check_validity(cert, now, "certificate"))

        # Proxies come first; the first certificate without ProxyCertInfo is the end entity.
        infos = [_proxy_info(cert) for cert in presented]
        ee_index = next((i for i, info in enumerate(infos) if info is None), None)
        if ee_index is None:
            if self.trust.issuers(presented[-1]):
                raise UntrustedChain(
                    f"proxy {oneline(presented[-1].subject)} was issued by the CA {oneline(presented[-1].issuer)}"
                )
            raise UntrustedChain("the chain holds only proxy certificates: its end-entity certificate is missing")
        for i, cert in enumerate(presented[ee_index:], start=ee_index):
            if _has_ext(cert, PROXY_CERT_INFO_DRAFT):
                raise UntrustedChain(
                    f"{oneline(cert.subject)} is a pre-RFC 3820 (draft OID) proxy, which is not accepted"
                )
            if infos[i] is not None:
                raise UntrustedChain(f"proxy {oneline(cert.subject)} appears above the end entity")
        end_entity = presented[ee_index]
        if _is_ca(end_entity) and ee_index > 0:
            raise UntrustedChain(f"a proxy was signed by the CA certificate {oneline(end_entity.subject)}")
        if _is_ca(end_entity):
            raise UntrustedChain(f"{oneline(end_entity.subject)} is a CA certificate, not an end entity")

        limited = False
        for i in range(ee_index):
            proxy, issuer = presented[i], presented[i + 1]
            limited |= self._check_proxy(proxy, issuer, infos[i], proxies_beneath=i)
            self._check_signature(proxy, issuer)

        # End entity and presented intermediate CAs up to a trusted CA.
        intermediates = 0
        for i in range(ee_index, len(presented)):
            cert = presented[i]
            if i > ee_index:
                self._check_ca(cert, intermediates_beneath=intermediates)
                if cert.subject != cert.issuer:
                    intermediates += 1
            if i + 1 < len(presented):
                issuer = presented[i + 1]
                if not _is_ca(issuer):
                    raise UntrustedChain(
                        f"{oneline(cert.subject)} has no ProxyCertInfo yet was issued by the non-CA "
                        f"{oneline(issuer.subject)} (a proxy without ProxyCertInfo?)"
                    )
                self._check_signature(cert, issuer)
                continue
            anchor = self._anchor(cert, now)
            self._check_ca(anchor.certificate, intermediates_beneath=intermediates)
            windows.append(self._check_validity(anchor.certificate, now, "trusted CA"))
            self._check_policy_and_crl(cert, anchor, now)
            break
        else:  # pragma: no cover - the loop always reaches its top
            raise UntrustedChain("no trusted CA")
        # CRLs of presented intermediate CAs are not in the trust directory; CRLs of trusted CAs are.
        for i in range(ee_index, len(presented) - 1):
            for anchor in self.trust.anchors():
                if anchor.certificate == presented[i + 1]:
                    self._check_policy_and_crl(presented[i], anchor, now)

        return ValidatedChain(
            identity=oneline(end_entity.subject),
            limited=limited,
            chain=chain,
            end_entity=end_entity,
            proxies=ee_index,
            not_before=max(w[0] for w in windows),
            not_after=min(w[1] for w in windows),
            anchor_dn=anchor.dn,
        )

    def _check_validity(self, cert: x509.Certificate, now: datetime, what: str) -> tuple[datetime, datetime]:
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if now < start:
            raise UntrustedChain(f"{what} {oneline(cert.subject)} is not valid before {start.isoformat()}")
        if now > end:
            raise UntrustedChain(f"{what} {oneline(cert.subject)} expired at {end.isoformat()}")
        return start, end

    def _check_signature(self, cert: x509.Certificate, issuer: x509.Certificate) -> None:
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

    def _check_proxy(
        self, proxy: x509.Certificate, issuer: x509.Certificate, info: tuple[ProxyCertInfo, bool], proxies_beneath: int
    ) -> bool:
        name = oneline(proxy.subject)
        pci, critical = info
        if not critical:
            raise UntrustedChain(f"proxy {name}: ProxyCertInfo must be critical (RFC 3820 3.8)")
        if _is_ca(issuer):
            raise UntrustedChain(f"proxy {name} was issued by the CA {oneline(issuer.subject)}")
        issuer_rdns = list(issuer.subject.rdns)
        rdns = list(proxy.subject.rdns)
        if rdns[: len(issuer_rdns)] != issuer_rdns or len(rdns) != len(issuer_rdns) + 1:
            added = len(rdns) - len(issuer_rdns)
            if rdns[: len(issuer_rdns)] == issuer_rdns and added > 1:
                raise UntrustedChain(
                    f"proxy {name} adds {added} RDNs to its issuer's subject; exactly one CN is allowed"
                )
            raise UntrustedChain(f"proxy subject {name} does not extend its issuer's subject {oneline(issuer.subject)}")
        last = list(rdns[-1])
        if len(last) != 1 or last[0].oid != x509.oid.NameOID.COMMON_NAME:
            raise UntrustedChain(f"proxy {name}: the RDN added to the issuer's subject must be a single CN")
        if _is_ca(proxy):
            raise UntrustedChain(f"proxy {name} has basicConstraints CA:TRUE")
        if proxy.issuer != issuer.subject:
            raise UntrustedChain(f"proxy {name}: issuer name is not its signer's subject")
        usage = _key_usage(proxy)
        if usage is not None and (not usage.digital_signature or usage.key_cert_sign):
            raise UntrustedChain(f"proxy {name}: keyUsage must allow digitalSignature and not keyCertSign")
        for oid in (x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, x509.oid.ExtensionOID.ISSUER_ALTERNATIVE_NAME):
            if _has_ext(proxy, oid):
                raise UntrustedChain(f"proxy {name} carries an alternative name (RFC 3820 3.5, 3.6)")
        if pci.path_length is not None and proxies_beneath > pci.path_length:
            raise UntrustedChain(
                f"proxy {name} allows {pci.path_length} further proxies but {proxies_beneath} follow it"
            )
        if pci.policy_language == LIMITED:
            return True
        if pci.policy_language == INHERIT_ALL:
            return False
        if pci.policy_language == INDEPENDENT:
            raise UntrustedChain(f"proxy {name} is an independent proxy, which carries no identity here")
        raise UntrustedChain(f"proxy {name} has unknown policy language {pci.policy_language}")

    def _check_ca(self, ca: x509.Certificate, intermediates_beneath: int) -> None:
        name = oneline(ca.subject)
        bc = _basic_constraints(ca)
        if bc is None or not bc.ca:
            raise UntrustedChain(f"{name} signs certificates but is not a CA (basicConstraints)")
        usage = _key_usage(ca)
        if usage is not None and not usage.key_cert_sign:
            raise UntrustedChain(f"CA {name}: keyUsage lacks keyCertSign")
        if bc.path_length is not None and intermediates_beneath > bc.path_length:
            raise UntrustedChain(f"CA {name}: path length {bc.path_length} exceeded")

    def _anchor(self, cert: x509.Certificate, now: datetime) -> TrustAnchor:
        candidates = self.trust.issuers(cert)
        if not candidates:
            raise UntrustedChain(
                f"{oneline(cert.subject)} was issued by {oneline(cert.issuer)}, which is not a trusted CA"
            )
        last: UntrustedChain | None = None
        for anchor in candidates:
            try:
                self._check_signature(cert, anchor.certificate)
                return anchor
            except UntrustedChain as exc:
                last = exc
        assert last is not None
        raise last

    def _check_policy_and_crl(self, cert: x509.Certificate, anchor: TrustAnchor, now: datetime) -> None:
        name = oneline(cert.subject)
        if anchor.policy is not None and not anchor.policy.allows(name):
            raise UntrustedChain(f"the signing policy of {anchor.dn} does not allow it to sign {name}")
        for crl in anchor.crls:
            if not crl.is_signature_valid(anchor.certificate.public_key()):
                raise UntrustedChain(f"the CRL of {anchor.dn} has a bad signature")
            if crl.next_update_utc is not None and now > crl.next_update_utc:
                raise UntrustedChain(f"the CRL of {anchor.dn} expired at {crl.next_update_utc.isoformat()}")
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise UntrustedChain(f"{name} (serial {cert.serial_number}) is revoked by {anchor.dn}")
