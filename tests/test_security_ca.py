"""The development CA behind `vws-admin ca init`: its layout, idempotence, and the real Globus tools reading it."""

import os
import shutil
import stat
import subprocess
from datetime import timedelta

import pytest
from cryptography import x509

from vws.clock import ManualClock, SystemClock
from vws.security import ca
from vws.security.credentials import Credential, oneline
from vws.security.trust import TrustStore, parse_signing_policy, subject_hash
from vws.security.validation import ChainValidator


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> ca.DevCA:
    # The real clock, as `vws-admin ca init` uses: grid-proxy-init and openssl check these files against it.
    root = tmp_path_factory.mktemp("dev-ca")
    assert ca.init(root, SystemClock(), hostname="vws.example.org") == ca.USER_DN
    return ca.DevCA(root)


def _soon_after_birth(dev: ca.DevCA) -> ManualClock:
    return ManualClock(dev.user().certificate.not_valid_before_utc + timedelta(hours=2))


def _files(dev: ca.DevCA) -> dict[str, bytes]:
    return {str(p.relative_to(dev.root)): p.read_bytes() for p in sorted(dev.root.rglob("*")) if p.is_file()}


def test_layout(dev):
    ca_cert = x509.load_pem_x509_certificate((dev.root / "ca" / "cacert.pem").read_bytes())
    digest = subject_hash(ca_cert.subject)
    assert set(_files(dev)) == {
        "ca/cacert.pem",
        "ca/cakey.pem",
        f"certificates/{digest}.0",
        f"certificates/{digest}.signing_policy",
        "hostcert.pem",
        "hostkey.pem",
        "usercert.pem",
        "userkey.pem",
    }
    for key in ("ca/cakey.pem", "hostkey.pem", "userkey.pem"):
        assert stat.S_IMODE((dev.root / key).stat().st_mode) == 0o600, key
    [policy] = parse_signing_policy((dev.trust_dir / f"{digest}.signing_policy").read_text())
    assert policy.ca_dn == ca.CA_DN and policy.subjects == ("/O=Grid/OU=vws/*",)
    assert dev.host().subject == f"{ca.HOST_OU}/CN=host/vws.example.org"
    assert dev.user().subject == ca.USER_DN


def test_init_twice_changes_nothing(dev):
    before = _files(dev)
    assert ca.init(dev.root, SystemClock(), hostname="other.example.org") == ca.USER_DN
    assert _files(dev) == before


def test_a_lost_trust_directory_is_rewritten_from_the_same_ca(dev, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dev.root, copy)
    shutil.rmtree(copy / "certificates")
    ca.init(copy, SystemClock())
    assert _files(ca.DevCA(copy)) == _files(dev)


def test_the_user_and_host_validate_against_the_trust_directory(dev):
    validator = ChainValidator(TrustStore(dev.trust_dir), _soon_after_birth(dev))
    assert validator.validate(dev.user().chain).identity == ca.USER_DN
    assert validator.validate(dev.host().chain).identity == oneline(dev.host().certificate.subject)


@pytest.mark.skipif(shutil.which("grid-proxy-init") is None, reason="globus-proxy-utils is not installed")
def test_grid_proxy_init_accepts_the_dev_ca(dev, tmp_path):
    """-verify makes grid-proxy-init check the user certificate against the hash-named CA and signing policy."""
    env = dict(
        os.environ,
        X509_CERT_DIR=str(dev.trust_dir),
        X509_USER_CERT=str(dev.user_cert),
        X509_USER_KEY=str(dev.user_key),
    )
    out = tmp_path / "x509up"
    run = subprocess.run(
        ["grid-proxy-init", "-verify", "-bits", "1024", "-out", str(out)], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    proxy = Credential.load(out)
    clock = ManualClock(proxy.certificate.not_valid_before_utc + timedelta(minutes=10))
    assert ChainValidator(TrustStore(dev.trust_dir), clock).validate(proxy.chain).identity == ca.USER_DN


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_finds_the_ca_by_its_hash(dev):
    run = subprocess.run(
        ["openssl", "verify", "-CApath", str(dev.trust_dir), str(dev.host_cert)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
