"""RFC 3820 proxy certificates: creation, and reading the ProxyCertInfo extension.

A proxy's subject is its issuer's subject plus one ``CN=<serial>``; it carries a
critical ProxyCertInfo (1.3.6.1.5.5.7.1.14) whose DER is ``SEQUENCE {
pCPathLenConstraint INTEGER OPTIONAL, proxyPolicy SEQUENCE { policyLanguage OID,
policy OCTET STRING OPTIONAL } }``.
``cryptography`` has no class for it, so it is written and read here as raw DER.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from vws.clock import Clock
from vws.security import der
from vws.security.credentials import Credential

PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
# The pre-RFC Globus OID ("old" GT3/GT4.0 draft proxies): recognised so we can refuse it clearly.
PROXY_CERT_INFO_DRAFT = x509.ObjectIdentifier("1.3.6.1.4.1.3536.1.222")
INHERIT_ALL = "1.3.6.1.5.5.7.21.1"
INDEPENDENT = "1.3.6.1.5.5.7.21.2"
LIMITED = "1.3.6.1.4.1.3536.1.1.1.9"

DEFAULT_LIFETIME = timedelta(hours=12)
BACKDATE = timedelta(minutes=5)  # grid-proxy-init backdates too: peers' clocks drift


@dataclass(frozen=True)
class ProxyCertInfo:
    path_length: int | None
    policy_language: str
    policy: bytes | None = None

    @property
    def limited(self) -> bool:
        return self.policy_language == LIMITED

    def to_der(self) -> bytes:
        policy = der.oid(self.policy_language)
        if self.policy is not None:
            policy += der.tlv(der.OCTET_STRING, self.policy)
        inner = der.tlv(der.SEQUENCE, policy)
        if self.path_length is not None:
            inner = der.integer(self.path_length) + inner
        return der.tlv(der.SEQUENCE, inner)

    @classmethod
    def from_der(cls, data: bytes) -> "ProxyCertInfo":
        tag, value, end = der.read(data)
        if tag != der.SEQUENCE or end != len(data):
            raise ValueError("ProxyCertInfo is not a SEQUENCE")
        parts = der.elements(value)
        path_length = None
        if parts and parts[0][0] == der.INTEGER:
            path_length = der.decode_integer(parts[0][1])
            if path_length < 0:
                raise ValueError("negative proxy path length")
            parts = parts[1:]
        if len(parts) != 1 or parts[0][0] != der.SEQUENCE:
            raise ValueError("ProxyCertInfo lacks its ProxyPolicy")
        policy_parts = der.elements(parts[0][1])
        if not policy_parts or policy_parts[0][0] != der.OID or len(policy_parts) > 2:
            raise ValueError("ProxyPolicy lacks its policyLanguage")
        policy = None
        if len(policy_parts) == 2:
            if policy_parts[1][0] != der.OCTET_STRING:
                raise ValueError("ProxyPolicy policy is not an OCTET STRING")
            policy = policy_parts[1][1]
        return cls(path_length, der.decode_oid(policy_parts[0][1]), policy)


def proxy_cert_info(cert: x509.Certificate) -> tuple[ProxyCertInfo, bool] | None:
    """(ProxyCertInfo, critical) of ``cert``, or None when it has none (it is not an RFC 3820 proxy)."""
    try:
        ext = cert.extensions.get_extension_for_oid(PROXY_CERT_INFO)
    except x509.ExtensionNotFound:
        return None
    return ProxyCertInfo.from_der(ext.value.value), ext.critical


# RSA below 2048 bits is refused by NIST SP 800-131A for signatures and by Debian's OpenSSL in TLS.
MINIMUM_KEY_BITS = 2048


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits < MINIMUM_KEY_BITS:
        raise ValueError(f"keys shorter than {MINIMUM_KEY_BITS} bits are refused")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def create_proxy(
    issuer: Credential,
    clock: Clock,
    *,
    lifetime: timedelta = DEFAULT_LIFETIME,
    limited: bool = False,
    path_length: int | None = None,
    bits: int = 2048,
    key: PrivateKeyTypes | None = None,
) -> Credential:
    """A new proxy signed by ``issuer`` (a user credential or another proxy).

    The proxy never outlives its issuer; ``key`` reuses an existing key pair (tests,
    or callers that pool keys), otherwise an RSA key of ``bits`` is generated.
    """
    if path_length is not None and path_length < 0:
        raise ValueError("path length must be >= 0")
    key = key or generate_key(bits)
    language = LIMITED if limited else INHERIT_ALL
    serial = secrets.randbits(31) | 1 << 30  # positive, non-zero, fits an int32 like grid-proxy-init's
    issuer_cert = issuer.certificate
    subject = x509.Name(
        list(issuer_cert.subject.rdns)
        + [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])]
    )
    now = clock.now()
    not_after = min(now + lifetime, issuer_cert.not_valid_after_utc)
    issuer_usage = _key_usage(issuer_cert)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True if issuer_usage is None else issuer_usage.key_encipherment,
        data_encipherment=False if issuer_usage is None else issuer_usage.data_encipherment,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(max(now - BACKDATE, issuer_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.UnrecognizedExtension(PROXY_CERT_INFO, ProxyCertInfo(path_length, language).to_der()),
            critical=True,
        )
    )
    cert = builder.sign(issuer.key, hashes.SHA256())
    return Credential(key, (cert,) + issuer.chain)


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
