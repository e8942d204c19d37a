"""X.509 credentials: a private key and its certificate chain, leaf first.

Loading a PEM key costs tens of milliseconds, so a Credential is loaded once and
shared. ``oneline`` renders a DN the way OpenSSL and the Globus tools print it
(``/O=Grid/OU=Example/CN=Jane Doe``): that string is the identity that grid-mapfiles,
workspace owners, admin lists and signing policies match. It escapes nothing, so a
value holding ``/KEY=`` or ``+KEY=`` would print like a different name (an OU of
``local/CN=vws user`` reads as two RDNs): ``identity`` refuses such names, which
keeps one string for one name wherever identities are compared.
"""

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

# The short names OpenSSL's X509_NAME_oneline uses.
_SHORT = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.TITLE: "title",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
}
_LONG = {short: oid for oid, short in _SHORT.items()}
_LONG.update({"Email": NameOID.EMAIL_ADDRESS, "E": NameOID.EMAIL_ADDRESS, "USERID": NameOID.USER_ID})


def oneline(name: x509.Name) -> str:
    """``/O=Grid/OU=Example/CN=Jane Doe``: RDNs in certificate (DER) order, multi-valued RDNs joined by '+'."""
    parts = []
    for rdn in name.rdns:
        parts.append("+".join(f"{_SHORT.get(a.oid, a.oid.dotted_string)}={_text(a.value)}" for a in rdn))
    return "".join("/" + part for part in parts)


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.hex()


_KEYS = "|".join([*sorted(map(re.escape, _LONG), key=len, reverse=True), r"\d+(?:\.\d+)+"])  # or a dotted OID
_RDN_SPLIT = re.compile(rf"/(?=(?:{_KEYS})=)")
_ATTRIBUTE_SPLIT = re.compile(rf"\+(?=(?:{_KEYS})=)")


class AmbiguousName(ValueError):
    """A name whose one-line form reads back as other RDNs: it could pass for another identity."""


def parse_oneline(dn: str) -> x509.Name:
    """The inverse of ``oneline``.

    A '/' or '+' inside a value (``CN=host/example.org``) is kept when no ``KEY=`` follows it.
    """
    if not dn.startswith("/"):
        raise ValueError(f"not a /-separated DN: {dn!r}")
    rdns = []
    for part in _RDN_SPLIT.split(dn[1:]):
        attributes = []
        for pair in _ATTRIBUTE_SPLIT.split(part):
            key, sep, value = pair.partition("=")
            oid = _LONG.get(key) or (x509.ObjectIdentifier(key) if sep and key[:1].isdigit() else None)
            if not sep or oid is None:
                raise ValueError(f"cannot read {pair!r} in {dn!r}")
            attributes.append(x509.NameAttribute(oid, value))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


def identity(name: x509.Name) -> str:
    """``oneline(name)``, or AmbiguousName when that string reads back as other RDNs than ``name``'s."""
    text = oneline(name)
    try:
        read_back = parse_oneline(text)
    except ValueError:
        read_back = None
    if read_back is None or _shape(read_back) != _shape(name):
        raise AmbiguousName(f"the name {text} is ambiguous: a value in it holds '/', '+' or '=' that reads as RDNs")
    return text


def _shape(name: x509.Name) -> list[set[tuple[x509.ObjectIdentifier, str | bytes]]]:
    return [{(attribute.oid, attribute.value) for attribute in rdn} for rdn in name.rdns]


@dataclass(frozen=True, eq=False)
class Credential:
    """A private key and its chain, leaf first (the leaf's public key matches ``key``)."""

    key: PrivateKeyTypes
    chain: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("a credential needs at least one certificate")
        ours = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = (
            self.chain[0]
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        if ours != theirs:
            raise ValueError("the private key does not match the leaf certificate")

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def subject(self) -> str:
        return oneline(self.chain[0].subject)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes | None = None, password: bytes | None = None) -> "Credential":
        """Certificates in file order (leaf first); the key from ``key_pem`` or from the same text (a proxy file)."""
        chain = tuple(x509.load_pem_x509_certificates(cert_pem))
        key = serialization.load_pem_private_key(key_pem if key_pem is not None else cert_pem, password)
        return cls(key, chain)

    @classmethod
    def load(
        cls, cert_path: str | os.PathLike, key_path: str | os.PathLike | None = None, password: bytes | None = None
    ) -> "Credential":
        """Load once: ``load(proxy_file)`` or ``load(usercert.pem, userkey.pem)``."""
        cert_pem = Path(cert_path).read_bytes()
        key_pem = Path(key_path).read_bytes() if key_path is not None else None
        return cls.from_pem(cert_pem, key_pem, password)

    def to_pem(self) -> bytes:
        """grid-proxy-init's layout: leaf certificate, unencrypted key, then the rest of the chain."""
        out = [self.chain[0].public_bytes(serialization.Encoding.PEM), key_pem(self.key)]
        out.extend(cert.public_bytes(serialization.Encoding.PEM) for cert in self.chain[1:])
        return b"".join(out)

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``to_pem`` with mode 0600 from the first byte (never world-readable, even briefly)."""
        return write_private(Path(path), self.to_pem())


def key_pem(key: PrivateKeyTypes) -> bytes:
    # Traditional OpenSSL ("BEGIN RSA PRIVATE KEY") is what grid-proxy-init writes and Globus reads.
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, rsa.RSAPrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def write_public(path: Path, certs: Sequence[x509.Certificate]) -> Path:
    """Certificates: 0644 less what the umask takes away (vws keeps its state dir's files 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path
