"""A throw-away PKI for the security tests: CAs, users, proxies good and bad, built once per session.

Key generation dominates the cost of these tests, so a small pool of RSA keys is
made once and reused; certificates are cheap and are built per test.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from lxml import etree

from vws.clock import ManualClock
from vws.security import ca
from vws.security.credentials import Credential, parse_oneline
from vws.security.proxy import INHERIT_ALL, PROXY_CERT_INFO, ProxyCertInfo, create_proxy, generate_key
from vws.xmlns import SOAP_ENV, WORKSPACE, WSA, WSRP

# Long-lived CA and users, so chains made by grid-proxy-init (which reads the real clock) validate too.
PKI_BIRTH = datetime(2020, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # what the tests' ManualClock says unless they move it
CA_DN = "/O=Grid/OU=vws-test/CN=Test CA"
USER_DN = "/O=Grid/OU=vws-test/OU=people/CN=Jane Doe"
OTHER_DN = "/O=Grid/OU=vws-test/OU=people/CN=John Roe"
FOREIGN_CA_DN = "/O=Elsewhere/CN=Foreign CA"


class Keys:
    def __init__(self, count: int = 8) -> None:
        self._keys = [generate_key(2048) for _ in range(count)]

    def __getitem__(self, index: int):
        return self._keys[index % len(self._keys)]


@dataclass
class Pki:
    keys: Keys
    root: Path
    ca: Credential
    user: Credential
    other: Credential
    host: Credential
    foreign_ca: Credential
    foreign_user: Credential

    @property
    def trust_dir(self) -> Path:
        return self.root / "certificates"

    def clock(self, at: datetime = NOW) -> ManualClock:
        return ManualClock(at)

    def proxy(self, issuer: Credential | None = None, *, key_index: int = 5, **options) -> Credential:
        """A proxy made by ``vws.security.proxy.create_proxy`` at NOW (12 h lifetime unless told)."""
        return create_proxy(issuer or self.user, ManualClock(NOW), key=self.keys[key_index], **options)


def build_pki(root: Path, keys: Keys) -> Pki:
    birth = ManualClock(PKI_BIRTH)
    authority = ca.make_ca(CA_DN, birth, key=keys[0], days=365 * 40)
    ca.install_ca(root / "certificates", authority.certificate, "/O=Grid/OU=vws-test/*")
    user = ca.issue(authority, USER_DN, birth, key=keys[1], days=365 * 30)
    other = ca.issue(authority, OTHER_DN, birth, key=keys[2], days=365 * 30)
    host = ca.issue(
        authority,
        "/O=Grid/OU=vws-test/CN=host/localhost",
        birth,
        key=keys[3],
        days=365 * 30,
        server=True,
        dns_names=("localhost",),
    )
    foreign = ca.make_ca(FOREIGN_CA_DN, birth, key=keys[4], days=365 * 40)
    foreign_user = ca.issue(foreign, "/O=Elsewhere/CN=Mallory", birth, key=keys[6], days=365 * 30)
    for name, cred in (("user", user), ("other", other), ("host", host), ("foreign", foreign_user)):
        cred_dir = root / name
        cred_dir.mkdir(parents=True, exist_ok=True)
        ca.write_public(cred_dir / "cert.pem", list(cred.chain))
        ca.write_private(cred_dir / "key.pem", ca.key_pem(cred.key))
    ca.write_public(root / "cacert.pem", [authority.certificate])
    return Pki(keys, root, authority, user, other, host, foreign, foreign_user)


def raw_proxy(
    issuer: Credential,
    key,
    *,
    subject: x509.Name | None = None,
    extra_cns: int = 1,
    policy: str = INHERIT_ALL,
    path_length: int | None = None,
    pci: bool = True,
    pci_critical: bool = True,
    ca_bit: bool = False,
    key_usage: x509.KeyUsage | None = None,
    not_before: datetime = NOW - timedelta(hours=1),
    not_after: datetime = NOW + timedelta(hours=12),
    signer_key=None,
    san: bool = False,
) -> Credential:
    """A proxy built field by field, so tests can break exactly one rule."""
    issuer_cert = issuer.certificate
    if subject is None:
        rdns = list(issuer_cert.subject.rdns)
        for n in range(extra_cns):
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(1000 + n))]))
        subject = x509.Name(rdns)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if pci:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(PROXY_CERT_INFO, ProxyCertInfo(path_length, policy).to_der()),
            critical=pci_critical,
        )
    if ca_bit:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
    cert = builder.sign(signer_key or issuer.key, hashes.SHA256())
    return Credential(key, (cert,) + issuer.chain)


def end_entity(
    authority: Credential,
    dn: str | x509.Name,
    key,
    *,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=1),
    serial: int | None = None,
    signer_key=None,
    ca_bit: bool = False,
    key_usage: x509.KeyUsage | None = None,
) -> Credential:
    builder = (
        x509.CertificateBuilder()
        .subject_name(parse_oneline(dn) if isinstance(dn, str) else dn)
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca_bit, path_length=None), critical=True)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return Credential(key, (builder.sign(signer_key or authority.key, hashes.SHA256()),))


def crl(
    authority: Credential,
    serials: list[int],
    *,
    this_update: datetime = NOW - timedelta(days=1),
    next_update: datetime = NOW + timedelta(days=30),
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this_update).build()
        )
    return builder.sign(authority.key, hashes.SHA256())


# A GetResourceProperty request as a GT4 client sends it: WS-Addressing headers and the resource key.
REQUEST = f"""<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:wsa="{WSA}">
  <soapenv:Header>
    <wsa:To>https://localhost:8443/wsrf/services/WorkspaceService</wsa:To>
    <wsa:Action>http://docs.oasis-open.org/wsrf/2004/06/wsrf-WS-ResourceProperties/GetResourceProperty</wsa:Action>
    <wsa:MessageID>uuid:5f0c1c0e-0000-4000-8000-000000000001</wsa:MessageID>
    <work:WorkspaceKey xmlns:work="{WORKSPACE}">42</work:WorkspaceKey>
  </soapenv:Header>
  <soapenv:Body>
    <wsrp:GetResourceProperty xmlns:wsrp="{WSRP}" xmlns:work="{WORKSPACE}">work:CurrentState</wsrp:GetResourceProperty>
  </soapenv:Body>
</soapenv:Envelope>""".encode()


def request() -> etree._Element:
    return etree.fromstring(REQUEST)


def wire(envelope: etree._Element) -> etree._Element:
    """What the receiver sees: the bytes re-parsed."""
    return etree.fromstring(etree.tostring(envelope))


# Session fixtures, imported by each tests/test_security_*.py module.


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="session")
def pki(tmp_path_factory, keys) -> Pki:
    return build_pki(tmp_path_factory.mktemp("pki"), keys)
