"""RFC 3820 path validation: every bad chain refused for the right reason; real peers' chains accepted."""

import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests import security_helpers
from tests.security_helpers import (
    NOW,
    USER_DN,
    Keys,
    Pki,
    crl,
    end_entity,
    raw_proxy,
)
from vws.clock import ManualClock
from vws.errors import AuthenticationFailed
from vws.security import ca
from vws.security.credentials import Credential, oneline, parse_oneline
from vws.security.proxy import INDEPENDENT, LIMITED, ProxyCertInfo, proxy_cert_info
from vws.security.trust import TrustStore, parse_signing_policy, subject_hash
from vws.security.validation import TRUST_RECHECK, ChainValidator, UntrustedChain

keys = security_helpers.keys  # session fixtures
pki = security_helpers.pki


@pytest.fixture
def validator(pki):
    return ChainValidator(TrustStore(pki.trust_dir), ManualClock(NOW))


# -- good chains -------------------------------------------------------------------------------------


def test_end_entity_alone_validates_with_its_dn(pki, validator):
    result = validator.validate(pki.user.chain)
    assert result.identity == USER_DN and not result.limited and result.proxies == 0


@pytest.mark.parametrize("value", ["host/localhost", "Jane+Doe", "a=b", "x/y+z"])
def test_a_slash_plus_or_equals_that_reads_as_no_rdn_is_kept(pki, keys, validator, value):
    credential = end_entity(pki.ca, _named((ORG, "Grid"), (OU, "vws-test"), (CN, value)), keys[6])
    assert validator.validate(credential.chain).identity == f"/O=Grid/OU=vws-test/CN={value}"


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_proxy_chains_carry_the_end_entity_identity(pki, validator, depth):
    cred = pki.user
    for level in range(depth):
        cred = pki.proxy(cred, key_index=5 + level)
    result = validator.validate(cred.chain)
    assert result.identity == USER_DN
    assert result.proxies == depth and not result.limited
    assert oneline(cred.certificate.subject).startswith(USER_DN + "/CN=")


@pytest.mark.parametrize(
    "levels, limited",
    [(("limited",), True), (("limited", "full"), True), (("full", "limited"), True), (("full", "full"), False)],
    ids=["limited", "impersonation-under-limited", "limited-under-impersonation", "impersonation"],
)
def test_limited_is_detected_anywhere_in_the_chain(pki, validator, levels, limited):
    cred = pki.user
    for n, level in enumerate(levels):
        cred = pki.proxy(cred, key_index=5 + n, limited=level == "limited")
    assert validator.validate(cred.chain).limited is limited


def test_a_presented_copy_of_the_trusted_ca_is_accepted(pki, validator):
    chain = pki.proxy().chain + (pki.ca.certificate,)
    assert validator.validate(chain).identity == USER_DN


def test_path_length_within_bounds(pki, validator):
    first = pki.proxy(path_length=1)
    second = pki.proxy(first, key_index=6)
    assert validator.validate(second.chain).proxies == 2


def test_intermediate_ca_presented_in_the_chain(pki, tmp_path, keys):
    clock = ManualClock(NOW)
    sub = ca.make_ca("/O=Grid/OU=vws-test/CN=Sub CA", clock, key=keys[7], issuer=pki.ca)
    user = ca.issue(sub, "/O=Grid/OU=vws-test/CN=Sub User", clock, key=keys[6])
    shutil.copytree(pki.trust_dir, tmp_path / "trust")
    result = ChainValidator(TrustStore(tmp_path / "trust"), clock).validate(user.chain + (sub.certificate,))
    assert result.identity == "/O=Grid/OU=vws-test/CN=Sub User"


# -- every bad chain ---------------------------------------------------------------------------------


Build = Callable[[Pki, Keys], tuple[x509.Certificate, ...]]
ENCIPHER_ONLY = x509.KeyUsage(False, False, True, False, False, False, False, False, False)


def _proxy(**breaking) -> Build:
    """A proxy of the test user that breaks the rule ``breaking`` names."""
    return lambda pki, keys: raw_proxy(pki.user, keys[5], **breaking).chain


def _end_entity(dn: str, **options) -> Build:
    return lambda pki, keys: end_entity(pki.ca, dn, keys[6], **options).chain


def _named(*rdns: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    """A name built RDN by RDN, so a value may hold what its one-line form cannot show."""
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]) for oid, value in rdns])


ORG, OU, CN = NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME


def _proxy_of_end_entity(dn: str, **options) -> Build:
    return lambda pki, keys: raw_proxy(end_entity(pki.ca, dn, keys[6], **options), keys[5]).chain


def _proxies_beneath(path_length: int, depth: int) -> Build:
    """``depth`` proxies beneath one whose pCPathLenConstraint is ``path_length``."""

    def build(pki: Pki, keys: Keys) -> tuple[x509.Certificate, ...]:
        credential = raw_proxy(pki.user, keys[5], path_length=path_length)
        for level in range(depth):
            credential = raw_proxy(credential, keys[6 + level])
        return credential.chain

    return build


BAD_CHAINS: dict[str, tuple[Build, str]] = {
    "expired proxy": (_proxy(not_after=NOW - timedelta(minutes=1)), "expired"),
    "proxy not yet valid": (_proxy(not_before=NOW + timedelta(hours=1)), "not valid before"),
    "expired end entity": (
        _end_entity(USER_DN, not_before=NOW - timedelta(days=9), not_after=NOW - timedelta(days=1)),
        "expired",
    ),
    "wrong CA": (lambda pki, keys: pki.foreign_user.chain, "not a trusted CA"),
    "proxy of a foreign user": (lambda pki, keys: raw_proxy(pki.foreign_user, keys[5]).chain, "not a trusted CA"),
    "forged end-entity signature": (
        lambda pki, keys: end_entity(pki.ca, USER_DN, keys[6], signer_key=keys[7]).chain,
        "does not verify",
    ),
    "forged proxy signature": (
        lambda pki, keys: raw_proxy(pki.user, keys[5], signer_key=keys[7]).chain,
        "does not verify",
    ),
    "proxy name does not extend the issuer": (
        _proxy(subject=parse_oneline("/O=Grid/OU=vws-test/OU=people/CN=Someone Else/CN=123")),
        "does not extend",
    ),
    "two CNs added": (_proxy(extra_cns=2), "exactly one CN"),
    "no CN added": (_proxy(extra_cns=0), "does not extend"),
    "added RDN is not a CN": (_proxy(subject=parse_oneline(USER_DN + "/OU=1")), "single CN"),
    "path length exceeded": (_proxies_beneath(path_length=0, depth=1), "allows 0 further proxies"),
    "path length exceeded two levels up": (_proxies_beneath(path_length=1, depth=2), "allows 1 further"),
    "CA bit on a proxy": (_proxy(ca_bit=True), "CA:TRUE"),
    "missing ProxyCertInfo": (_proxy(pci=False), "non-CA"),
    "non-critical ProxyCertInfo": (_proxy(pci_critical=False), "must be critical"),
    "proxy keyUsage without digitalSignature": (_proxy(key_usage=ENCIPHER_ONLY), "digitalSignature"),
    "proxy with subjectAltName": (_proxy(san=True), "alternative name"),
    "independent proxy": (_proxy(policy=INDEPENDENT), "independent"),
    "unknown proxy policy": (_proxy(policy="1.2.3.4"), "unknown policy"),
    "proxy signed by the CA": (lambda pki, keys: raw_proxy(pki.ca, keys[5]).chain[:1], "issued by the CA"),
    "proxy without its end entity": (
        lambda pki, keys: raw_proxy(pki.user, keys[5]).chain[:1],
        "end-entity certificate is missing",
    ),
    "CA certificate as the end entity": (lambda pki, keys: (pki.ca.certificate,), "is a CA certificate"),
    "end entity outside the signing policy": (_end_entity("/O=Other/CN=Outsider"), "signing policy"),
    "end entity with CA bit signs a proxy": (
        _proxy_of_end_entity("/O=Grid/OU=vws-test/CN=Mini CA", ca_bit=True),
        "signed by the CA certificate",
    ),
    "end entity without digitalSignature signs a proxy": (
        _proxy_of_end_entity("/O=Grid/OU=vws-test/CN=Encipher Only", key_usage=ENCIPHER_ONLY),
        "lacks digitalSignature",
    ),
    "empty chain": (lambda pki, keys: (), "no certificate"),
    # One-line DNs escape nothing: these print as names they are not.
    "a value that prints as another user's RDNs": (
        _end_entity(_named((ORG, "Grid"), (OU, "vws-test"), (OU, "people/CN=Jane Doe"))),
        "/O=Grid/OU=vws-test/OU=people/CN=Jane Doe is ambiguous",
    ),
    "a value that prints inside the signing policy": (
        _end_entity(_named((ORG, "Grid/OU=vws-test"), (CN, "Eve"))),
        "ambiguous",
    ),
    "a value that prints as a multi-valued RDN": (
        _end_entity(_named((ORG, "Grid"), (OU, "vws-test"), (CN, "Jane+UID=jane"))),
        "ambiguous",
    ),
    "a proxy of an ambiguous name": (
        lambda pki, keys: (
            raw_proxy(end_entity(pki.ca, _named((ORG, "Grid"), (OU, "vws-test/CN=x")), keys[6]), keys[5]).chain
        ),
        "ambiguous",
    ),
}


@pytest.mark.parametrize("case", BAD_CHAINS)
def test_bad_chain_is_refused(pki, keys, validator, case):
    build, reason = BAD_CHAINS[case]
    with pytest.raises(UntrustedChain, match=reason) as refused:
        validator.validate(build(pki, keys))
    assert isinstance(refused.value, AuthenticationFailed)


def test_revoked_by_crl(pki, keys, tmp_path):
    shutil.copytree(pki.trust_dir, tmp_path / "trust")
    victim = end_entity(
        pki.ca,
        "/O=Grid/OU=vws-test/CN=Revoked",
        keys[6],
        serial=424242,
    )
    clock = ManualClock(NOW)
    validator = ChainValidator(TrustStore(tmp_path / "trust"), clock)
    chain = raw_proxy(victim, keys[5]).chain
    assert validator.validate(chain).identity == "/O=Grid/OU=vws-test/CN=Revoked"  # cached, then revoked:
    digest = subject_hash(pki.ca.certificate.subject)
    (tmp_path / "trust" / f"{digest}.r0").write_bytes(crl(pki.ca, [424242]).public_bytes(serialization.Encoding.PEM))
    clock.advance(TRUST_RECHECK)  # the trust directory is looked at again once a second
    with pytest.raises(UntrustedChain, match="revoked"):
        validator.validate(chain)
    assert validator.validate(pki.user.chain).identity == USER_DN  # others still pass the CRL


def test_a_signing_policy_binds_only_the_ca_of_its_own_hash(pki, keys, tmp_path):
    shutil.copytree(pki.trust_dir, tmp_path / "trust")
    # Another file naming our CA and widening its subjects: the Globus tools never read it for this CA.
    (tmp_path / "trust" / "00000000.signing_policy").write_text(ca.signing_policy(pki.ca.subject, "/O=Other/*"))
    outsider = end_entity(pki.ca, "/O=Other/CN=Outsider", keys[6])
    with pytest.raises(UntrustedChain, match="signing policy"):
        ChainValidator(TrustStore(tmp_path / "trust"), ManualClock(NOW)).validate(outsider.chain)


def test_expired_crl_refuses(pki, tmp_path):
    shutil.copytree(pki.trust_dir, tmp_path / "trust")
    digest = subject_hash(pki.ca.certificate.subject)
    old = crl(pki.ca, [], this_update=NOW - timedelta(days=60), next_update=NOW - timedelta(days=30))
    (tmp_path / "trust" / f"{digest}.r0").write_bytes(old.public_bytes(serialization.Encoding.DER))
    with pytest.raises(UntrustedChain, match="CRL .* expired"):
        ChainValidator(TrustStore(tmp_path / "trust"), ManualClock(NOW)).validate(pki.user.chain)


def test_cache_respects_the_crl_window(pki, tmp_path):
    shutil.copytree(pki.trust_dir, tmp_path / "trust")
    digest = subject_hash(pki.ca.certificate.subject)
    soon = crl(pki.ca, [], next_update=NOW + timedelta(hours=1))
    (tmp_path / "trust" / f"{digest}.r0").write_bytes(soon.public_bytes(serialization.Encoding.PEM))
    clock = ManualClock(NOW)
    validator = ChainValidator(TrustStore(tmp_path / "trust"), clock)
    assert validator.validate(pki.user.chain).not_after == NOW + timedelta(hours=1)
    clock.advance(timedelta(hours=2))  # the user certificate is still valid, the CRL is not
    with pytest.raises(UntrustedChain, match="CRL .* expired"):
        validator.validate(pki.user.chain)


def test_untrusted_certificates_complete_a_proxy_only_chain(pki, keys):
    leaf_only = (pki.proxy().certificate,)
    trust = TrustStore(pki.trust_dir)
    with pytest.raises(UntrustedChain, match="end-entity certificate is missing"):
        ChainValidator(trust, ManualClock(NOW)).validate(leaf_only)
    completing = ChainValidator(trust, ManualClock(NOW), untrusted=[pki.other.certificate, pki.user.certificate])
    result = completing.validate(leaf_only)
    assert result.identity == USER_DN and result.chain == (leaf_only[0], pki.user.certificate)
    # A certificate with the right name but another key completes nothing.
    impostor = end_entity(pki.ca, USER_DN, keys[7])
    with pytest.raises(UntrustedChain, match="end-entity certificate is missing"):
        ChainValidator(trust, ManualClock(NOW), untrusted=[impostor.certificate]).validate(leaf_only)


def test_validate_der_matches_validate(pki, validator):
    chain = pki.proxy(limited=True).chain
    by_der = validator.validate_der([c.public_bytes(serialization.Encoding.DER) for c in chain])
    assert by_der == validator.validate(chain) and by_der.limited
    with pytest.raises(UntrustedChain, match="cannot be read"):
        validator.validate_der([b"\x30\x03junk"])


def test_cache_respects_validity(pki):
    clock = ManualClock(NOW)
    validator = ChainValidator(TrustStore(pki.trust_dir), clock)
    chain = pki.proxy(lifetime=timedelta(hours=1)).chain
    first = validator.validate(chain)
    assert validator.validate(chain) is first  # cached
    clock.advance(timedelta(hours=2))
    with pytest.raises(UntrustedChain, match="expired"):
        validator.validate(chain)


def test_trusted_ca_outside_its_validity(pki):
    with pytest.raises(UntrustedChain, match="expired"):
        ChainValidator(TrustStore(pki.trust_dir), ManualClock(NOW + timedelta(days=365 * 50))).validate(pki.user.chain)


def test_proxy_cert_info_round_trip():
    for info in (ProxyCertInfo(None, LIMITED), ProxyCertInfo(0, INDEPENDENT), ProxyCertInfo(300, "1.2.840.1", b"x")):
        assert ProxyCertInfo.from_der(info.to_der()) == info


def test_signing_policy_parsing():
    text = ca.signing_policy("/O=Grid/CN=CA", "/O=Grid/*", "/DC=org/*")
    [policy] = parse_signing_policy("# comment\n" + text)
    assert policy.ca_dn == "/O=Grid/CN=CA"
    assert policy.allows("/O=Grid/OU=x/CN=y") and policy.allows("/DC=org/CN=z") and not policy.allows("/O=Other/CN=y")


def _attribute(oid, value, string_type=None):
    # cryptography picks the ASN.1 string type itself unless told; the hash must follow whatever arrives.
    return x509.NameAttribute(oid, value) if string_type is None else x509.NameAttribute(oid, value, _type=string_type)


HASHED_NAMES = {
    "dev CA": [_attribute(NameOID.ORGANIZATION_NAME, "Grid"), _attribute(NameOID.COMMON_NAME, "vws Development CA")],
    "case and blanks": [_attribute(NameOID.COMMON_NAME, "  Jane \t  DOE  ")],
    "non-ASCII": [
        _attribute(NameOID.COUNTRY_NAME, "DE", x509.name._ASN1Type.PrintableString),
        _attribute(NameOID.COMMON_NAME, "Café Über"),
    ],
    "BMPString": [_attribute(NameOID.COMMON_NAME, "bmp Name", x509.name._ASN1Type.BMPString)],
    "IA5 email and DC": [_attribute(NameOID.EMAIL_ADDRESS, "A@B.org"), _attribute(NameOID.DOMAIN_COMPONENT, "ORG")],
}


@pytest.mark.parametrize("case", [*HASHED_NAMES, "multi-valued RDN"])
def test_subject_hash_matches_openssl(keys, case):
    if case == "multi-valued RDN":
        attributes = [_attribute(NameOID.COMMON_NAME, "b"), _attribute(NameOID.USER_ID, "Z")]
        name = x509.Name([x509.RelativeDistinguishedName(attributes)])
    else:
        name = x509.Name(HASHED_NAMES[case])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys[0].public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(keys[0], hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject_hash"], input=pem, capture_output=True, check=True)
    assert out.stdout.decode().strip() == subject_hash(cert.subject)


# -- real peers --------------------------------------------------------------------------------------


def _peer_env(pki: Pki) -> dict[str, str]:
    return dict(
        os.environ,
        X509_CERT_DIR=str(pki.trust_dir),
        X509_USER_CERT=str(pki.root / "user" / "cert.pem"),
        X509_USER_KEY=str(pki.root / "user" / "key.pem"),
    )


def _clock_for(cred: Credential) -> ManualClock:
    # grid-proxy-init stamps the real time; validate at a moment inside the proxy's window instead.
    return ManualClock(cred.certificate.not_valid_before_utc + timedelta(minutes=10))


@pytest.mark.skipif(shutil.which("grid-proxy-init") is None, reason="globus-proxy-utils not installed")
@pytest.mark.parametrize(
    "flags, limited, path_length",
    [
        ([], False, None),
        (["-limited"], True, None),
        (["-path-length", "2"], False, 2),
        (["-limited", "-path-length", "1"], True, 1),
    ],
    ids=["impersonation", "limited", "path-length", "limited-path-length-1"],
)
def test_grid_proxy_init_chains_validate(pki, tmp_path, flags, limited, path_length):
    out = tmp_path / "x509up"
    subprocess.run(
        ["grid-proxy-init", "-bits", "1024", "-out", str(out), *flags],
        env=_peer_env(pki),
        check=True,
        capture_output=True,
    )
    cred = Credential.load(out)
    info, critical = proxy_cert_info(cred.certificate)
    assert critical and info.path_length == path_length
    result = ChainValidator(TrustStore(pki.trust_dir), _clock_for(cred)).validate(cred.chain)
    assert result.identity == USER_DN and result.limited is limited and result.proxies == 1


@pytest.mark.skipif(shutil.which("grid-proxy-init") is None, reason="globus-proxy-utils not installed")
def test_grid_proxy_init_path_length_is_enforced_beneath_it(pki, tmp_path):
    # Note: grid-proxy-init writes "-path-length 0" as no constraint at all (openssl shows "infinite"),
    # so the smallest constraint it can express is 1.
    out = tmp_path / "x509up"
    subprocess.run(
        ["grid-proxy-init", "-bits", "1024", "-out", str(out), "-path-length", "1"],
        env=_peer_env(pki),
        check=True,
        capture_output=True,
    )
    cred = Credential.load(out)
    clock = _clock_for(cred)
    from vws.security.proxy import create_proxy

    validator = ChainValidator(TrustStore(pki.trust_dir), clock)
    once = create_proxy(cred, clock, key=pki.keys[6])
    assert validator.validate(once.chain).proxies == 2
    twice = create_proxy(once, clock, key=pki.keys[7])
    with pytest.raises(UntrustedChain, match="allows 1 further"):
        validator.validate(twice.chain)
