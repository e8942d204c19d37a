"""GSI Transport: TLS with proxy client certificates; identity from the verified chain."""

import socket
import ssl
import threading
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests import security_helpers
from tests.security_helpers import USER_DN, end_entity
from vws.clock import ManualClock
from vws.errors import AuthenticationFailed
from vws.security.credentials import Credential
from vws.security.proxy import create_proxy
from vws.security.tls import client_context, identity_from_leaf, peer_identity, server_context
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator

keys = security_helpers.keys  # session fixtures
pki = security_helpers.pki


def _real_now_proxy(pki, issuer: Credential, *, limited=False, key_index=5) -> Credential:
    # OpenSSL checks validity against the real clock, so these proxies span a wide window.
    clock = ManualClock(issuer.certificate.not_valid_before_utc + timedelta(days=1))
    lifetime = issuer.certificate.not_valid_after_utc - clock.now() - timedelta(days=1)
    return create_proxy(issuer, clock, key=pki.keys[key_index], limited=limited, lifetime=lifetime)


def handshake(pki, tmp_path, client: Credential, validator=None):
    """Run one TLS handshake over localhost; return (server outcome, client error)."""
    server_ctx = server_context(pki.root / "host" / "cert.pem", pki.root / "host" / "key.pem", pki.trust_dir)
    proxy_file = client.write(tmp_path / "x509up")
    client_ctx = client_context(proxy_file, pki.trust_dir)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: dict[str, object] = {}

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                outcome["peer"] = peer_identity(tls, validator)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    client_error = None
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, client_ctx.wrap_socket(raw) as tls:
            leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            outcome["server"] = identity_from_leaf(leaf).identity
            tls.recv(2)
    except (ssl.SSLError, OSError) as exc:
        client_error = exc
    thread.join(timeout=10)
    listener.close()
    return outcome, client_error


@pytest.mark.parametrize("limited", [False, True])
def test_proxy_client_certificate_identity_from_the_chain(pki, tmp_path, limited):
    proxy = _real_now_proxy(pki, pki.user, limited=limited)
    validator = ChainValidator(
        TrustStore(pki.trust_dir), ManualClock(proxy.certificate.not_valid_before_utc + timedelta(hours=1))
    )
    outcome, error = handshake(pki, tmp_path, proxy, validator)
    assert error is None and "error" not in outcome
    peer = outcome["peer"]
    assert peer.identity == USER_DN and peer.limited is limited and peer.chain_validated
    assert outcome["server"] == "/O=Grid/OU=vws-test/CN=host/localhost"


def test_proxy_of_a_proxy_through_the_chain(pki, tmp_path):
    first = _real_now_proxy(pki, pki.user, limited=True)
    second = _real_now_proxy(pki, first, key_index=6)
    validator = ChainValidator(
        TrustStore(pki.trust_dir), ManualClock(second.certificate.not_valid_before_utc + timedelta(hours=1))
    )
    outcome, error = handshake(pki, tmp_path, second, validator)
    assert error is None
    assert outcome["peer"].identity == USER_DN and outcome["peer"].limited  # impersonation under limited


def test_leaf_only_fallback_is_sound(pki, tmp_path):
    proxy = _real_now_proxy(pki, pki.user)
    outcome, error = handshake(pki, tmp_path, proxy, validator=None)
    assert error is None
    assert outcome["peer"].identity == USER_DN and not outcome["peer"].chain_validated
    deeper = _real_now_proxy(pki, proxy, key_index=6)
    # From a leaf alone a proxy of a proxy names the upper proxy, never a shorter DN: it fails closed.
    assert identity_from_leaf(deeper.certificate).identity.startswith(USER_DN + "/CN=")
    assert identity_from_leaf(pki.user.certificate).identity == USER_DN


def test_foreign_ca_is_refused(pki, tmp_path):
    outcome, error = handshake(pki, tmp_path, pki.foreign_user)
    assert "peer" not in outcome
    assert isinstance(outcome["error"], ssl.SSLError) and "certificate verify failed" in str(outcome["error"])


def test_no_client_certificate_is_refused(pki, tmp_path):
    server_ctx = server_context(pki.root / "host" / "cert.pem", pki.root / "host" / "key.pem", pki.trust_dir)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.load_verify_locations(cafile=str(pki.root / "cacert.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    errors = []

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except ssl.SSLError as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as raw, client_ctx.wrap_socket(raw) as tls:
            tls.recv(1)
    except (ssl.SSLError, OSError):
        pass
    thread.join(timeout=10)
    listener.close()
    assert errors and "certificate" in str(errors[0]).lower()


def test_a_leaf_whose_name_prints_as_another_is_refused(pki, keys):
    forged = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Grid")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "vws-test")]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "people/CN=Jane Doe")]
            ),
        ]
    )
    with pytest.raises(AuthenticationFailed, match="ambiguous"):
        identity_from_leaf(end_entity(pki.ca, forged, keys[6]).certificate)
