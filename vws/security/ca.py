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
    dn: str,
    clock: Clock,
    *,
    key: rsa.RSAPrivateKey | None = None,
    days: int = 365,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
) -> Credential:
    """An end-entity credential signed by ``ca`` (the chain holds only the leaf, as usercert.pem does)."""
    key = key or generate_key(2048)
    now = clock.now()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(parse_oneline(dn))
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
        ca = Credential.load(ca_cert_path, ca_key_path)
    else:
        ca = make_ca(ca_dn, clock)
        write_private(ca_key_path, key_pem(ca.key))
        write_public(ca_cert_path, [ca.certificate])
    prefix = ca_dn.rsplit("/", 1)[0]  # /O=Grid/OU=vws: the CA signs only below its own organisation
    dev = DevCA(root)
    digest = subject_hash(ca.certificate.subject)
    if not (dev.trust_dir / f"{digest}.0").exists() or not (dev.trust_dir / f"{digest}.signing_policy").exists():
        install_ca(dev.trust_dir, ca.certificate, prefix + "/*")
    host = hostname or socket.getfqdn()
    if not (dev.host_cert.exists() and dev.host_key.exists()):
        cred = issue(ca, f"{HOST_OU}/CN=host/{host}", clock, server=True, dns_names=(host, "localhost"))
        write_private(dev.host_key, key_pem(cred.key))
        write_public(dev.host_cert, [cred.certificate])
    if dev.user_cert.exists() and dev.user_key.exists():
        return oneline(x509.load_pem_x509_certificate(dev.user_cert.read_bytes()).subject)
    cred = issue(ca, user_dn, clock)
    write_private(dev.user_key, key_pem(cred.key))
    write_public(dev.user_cert, [cred.certificate])
    return user_dn
