"""A development CA, for ``vws-admin ca init DIR`` and for tests.

Layout written under DIR (every step skipped when its output already exists, so
running it twice changes nothing and returns the same user DN)::

    ca/cacert.pem ca/cakey.pem        the CA (key 0600)
    certificates/<hash>.0             the trust directory (X509_CERT_DIR)
    certificates/<hash>.signing_policy
    hostcert.pem hostkey.pem          CN=host/<hostname>
    usercert.pem userkey.pem          the user credential (X509_USER_CERT/KEY)
"""

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from vws.clock import Clock
from vws.security.credentials import Credential, key_pem, oneline, parse_oneline, write_private, write_public
from vws.security.proxy import generate_key
from vws.security.trust import subject_hash

CA_DN = "/O=Grid/OU=vws/CN=vws Development CA"
USER_DN = "/O=Grid/OU=vws/OU=local/CN=vws user"
HOST_OU = "/O=Grid/OU=vws/OU=hosts"


def make_ca(
    dn: str,
    clock: Clock,
    *,
    key: rsa.RSAPrivateKey | None = None,
    days: int = 3650,
    path_length: int | None = None,
    issuer: Credential | None = None,
) -> Credential:
    """A CA credential: self-signed, or an intermediate when ``issuer`` is given."""
    key = key or generate_key(2048)
    name = parse_oneline(dn)
    now = clock.now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return Credential(key, (cert,) + (issuer.chain if issuer else ()))


def issue(
    ca: Credential,
    dn: str | x509.Name,
    clock: Clock,
    *,
    key: rsa.RSAPrivateKey | None = None,
    days: int = 365,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
) -> Credential:
    """An end-entity credential signed by ``ca`` (the chain holds only the leaf, as usercert.pem does).

    ``dn``: a one-line DN, or a name built RDN by RDN.
    """
    key = key or generate_key(2048)
    now = clock.now()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(parse_oneline(dn) if isinstance(dn, str) else dn)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(min(now + timedelta(days=days), ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    return Credential(key, (builder.sign(ca.key, hashes.SHA256()),))


def signing_policy(ca_dn: str, *subject_patterns: str) -> str:
    patterns = " ".join(f'"{p}"' for p in subject_patterns)
    return f"access_id_CA X509 '{ca_dn}'\npos_rights globus CA:sign\ncond_subjects globus '{patterns}'\n"


def install_ca(trust_dir: Path, ca_cert: x509.Certificate, *subject_patterns: str) -> Path:
    """Write ``<hash>.0`` (and a signing policy when patterns are given) into a trust directory."""
    trust_dir.mkdir(parents=True, exist_ok=True)
    digest = subject_hash(ca_cert.subject)
    path = trust_dir / f"{digest}.0"
    write_public(path, [ca_cert])
    if subject_patterns:
        (trust_dir / f"{digest}.signing_policy").write_text(signing_policy(oneline(ca_cert.subject), *subject_patterns))
    return path


@dataclass(frozen=True)
class DevCA:
    root: Path

    @property
    def trust_dir(self) -> Path:
        return self.root / "certificates"

    @property
    def user_cert(self) -> Path:
        return self.root / "usercert.pem"

    @property
    def user_key(self) -> Path:
        return self.root / "userkey.pem"

    @property
    def host_cert(self) -> Path:
        return self.root / "hostcert.pem"

    @property
    def host_key(self) -> Path:
        return self.root / "hostkey.pem"

    @property
    def gridmap(self) -> Path:
        return self.root / "grid-mapfile"

    def user(self) -> Credential:
        return Credential.load(self.user_cert, self.user_key)

    def host(self) -> Credential:
        return Credential.load(self.host_cert, self.host_key)


def init(
    directory: str | os.PathLike,
    clock: Clock,
    *,
    hostname: str | None = None,
    user_dn: str = USER_DN,
    ca_dn: str = CA_DN,
) -> str:
    """Create (or keep) the development CA, trust directory, host and user credentials; return the user DN."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "ca").mkdir(exist_ok=True, mode=0o700)
    ca_cert_path, ca_key_path = root / "ca" / "cacert.pem", root / "ca" / "cakey.pem"
    if ca_cert_path.exists() and ca_key_path.exists():
        authority = Credential.load(ca_cert_path, ca_key_path)
    else:
        authority = make_ca(ca_dn, clock)
        _write(authority, ca_cert_path, ca_key_path)
    dev = DevCA(root)
    digest = subject_hash(authority.certificate.subject)
    if not (dev.trust_dir / f"{digest}.0").exists() or not (dev.trust_dir / f"{digest}.signing_policy").exists():
        organisation = authority.subject.rsplit("/", 1)[0]  # /O=Grid/OU=vws: it signs only below its own name
        install_ca(dev.trust_dir, authority.certificate, organisation + "/*")
    host = hostname or socket.getfqdn()
    names = (host, "localhost")
    host_dn = f"{HOST_OU}/CN=host/{host}"
    _kept(dev.host_cert, dev.host_key, lambda: issue(authority, host_dn, clock, server=True, dns_names=names))
    return oneline(_kept(dev.user_cert, dev.user_key, lambda: issue(authority, user_dn, clock)).subject)


def _kept(cert_path: Path, key_path: Path, make: Callable[[], Credential]) -> x509.Certificate:
    """The certificate at ``cert_path``; made with its key by ``make`` unless both files are there."""
    if cert_path.exists() and key_path.exists():
        return x509.load_pem_x509_certificate(cert_path.read_bytes())
    credential = make()
    _write(credential, cert_path, key_path)
    return credential.certificate


def _write(credential: Credential, cert_path: Path, key_path: Path) -> None:
    write_private(key_path, key_pem(credential.key))
    write_public(cert_path, [credential.certificate])
