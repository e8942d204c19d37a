"""vws-proxy-init against real peers, and the zeep GSI Secure Message plugin."""

import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from clients.proxy_init import main as proxy_init
from clients.wsse import GsiSecureMessage
from tests import security_helpers
from tests.security_helpers import NOW, REQUEST, USER_DN, wire
from vws.clock import ManualClock
from vws.errors import AuthenticationFailed
from vws.security.credentials import Credential
from vws.security.proxy import LIMITED, proxy_cert_info
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator
from vws.security.wssecurity import MessageSigner, MessageVerifier

keys = security_helpers.keys  # session fixtures
pki = security_helpers.pki


SCRIPT = Path(sys.executable).with_name("vws-proxy-init")


def _env(pki, **extra) -> dict[str, str]:
    env = dict(
        os.environ,
        X509_CERT_DIR=str(pki.trust_dir),
        X509_USER_CERT=str(pki.root / "user" / "cert.pem"),
        X509_USER_KEY=str(pki.root / "user" / "key.pem"),
    )
    env.pop("X509_USER_PROXY", None)
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "flags, kind, path_length",
    [
        ([], "impersonation", None),
        (["-limited"], "limited", None),
        (["-path-length", "0"], "impersonation", 0),
        (["-path-length", "3", "-hours", "1", "-bits", "1024"], "impersonation", 3),
    ],
    ids=["default", "limited", "path-length-0", "path-length-3-1h-1024"],
)
def test_vws_proxy_init_passes_the_real_peers(pki, tmp_path, flags, kind, path_length):
    out = tmp_path / "proxy.pem"
    env = _env(pki)
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "clients.proxy_init"]
    subprocess.run(command + ["-out", str(out), "-q", *flags], env=env, check=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    assert [m.group(1) for m in re.finditer(r"-----BEGIN ([A-Z ]+)-----", text)] == [
        "CERTIFICATE",
        "RSA PRIVATE KEY",
        "CERTIFICATE",
    ]
    if shutil.which("grid-proxy-info"):
        info = subprocess.run(
            ["grid-proxy-info", "-file", str(out)], env=env, capture_output=True, text=True, check=True
        )
        assert f"identity : {USER_DN}" in info.stdout
        assert f"RFC 3820 compliant {kind} proxy" in info.stdout
        expected_bits = "1024" if "1024" in flags else "2048"
        assert f"strength : {expected_bits} bits" in info.stdout
    if shutil.which("openssl"):
        verify = subprocess.run(
            [
                "openssl",
                "verify",
                "-allow_proxy_certs",
                "-CApath",
                str(pki.trust_dir),
                "-untrusted",
                str(pki.root / "user" / "cert.pem"),
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stderr
    cred = Credential.load(out)
    info, critical = proxy_cert_info(cred.certificate)
    assert critical and info.path_length == path_length and (info.policy_language == LIMITED) == (kind == "limited")
    clock = ManualClock(cred.certificate.not_valid_before_utc + timedelta(minutes=10))
    result = ChainValidator(TrustStore(pki.trust_dir), clock).validate(cred.chain)
    assert result.identity == USER_DN and result.limited == (kind == "limited")


def test_default_output_path_and_env(pki, tmp_path, monkeypatch):
    target = tmp_path / "from-env"
    for name, value in _env(pki, X509_USER_PROXY=str(target)).items():
        monkeypatch.setenv(name, value)
    assert proxy_init(["-q", "-hours", "2"]) == 0
    cred = Credential.load(target)
    lifetime = cred.certificate.not_valid_after_utc - cred.certificate.not_valid_before_utc
    assert timedelta(hours=2) <= lifetime <= timedelta(hours=2, minutes=5)
    monkeypatch.delenv("X509_USER_PROXY")
    from clients.proxy_init import default_proxy_path

    assert default_proxy_path() == Path(f"/tmp/x509up_u{os.getuid()}")


def test_encrypted_key_with_pwstdin(pki, tmp_path, monkeypatch):
    import io

    from cryptography.hazmat.primitives import serialization

    key = tmp_path / "enc.pem"
    key.write_bytes(
        pki.user.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    out = tmp_path / "p.pem"
    assert (
        proxy_init(["-cert", str(pki.root / "user" / "cert.pem"), "-key", str(key), "-out", str(out), "-pwstdin", "-q"])
        == 0
    )
    assert Credential.load(out).chain[1] == pki.user.certificate
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    with pytest.raises(SystemExit, match="wrong pass phrase"):
        proxy_init(["-cert", str(pki.root / "user" / "cert.pem"), "-key", str(key), "-out", str(out), "-pwstdin"])


# -- the zeep plugin -----------------------------------------------------------------------------------


def test_plugin_signs_addressing_and_workspace_headers_and_verifies_replies(pki):
    clock = ManualClock(NOW)
    plugin = GsiSecureMessage(
        pki.proxy(), TrustStore(pki.trust_dir), clock, server_identity="/O=Grid/OU=vws-test/CN=host/localhost"
    )
    envelope, _ = plugin.apply(etree.fromstring(REQUEST), {})
    server = MessageVerifier(TrustStore(pki.trust_dir), clock)
    verified = server.verify(wire(envelope))
    assert verified.identity == USER_DN
    assert len(verified.signed_headers) == 4  # To, Action, MessageID, WorkspaceKey
    reply = MessageSigner(pki.host, clock).sign(etree.fromstring(REQUEST))
    plugin.verify(wire(reply))
    assert plugin.last_reply.identity == "/O=Grid/OU=vws-test/CN=host/localhost"


def test_plugin_refuses_a_reply_from_the_wrong_signer(pki):
    clock = ManualClock(NOW)
    plugin = GsiSecureMessage(
        pki.proxy(), TrustStore(pki.trust_dir), clock, server_identity="/O=Grid/OU=vws-test/CN=host/localhost"
    )
    with pytest.raises(AuthenticationFailed, match="not by the expected service"):
        plugin.verify(wire(MessageSigner(pki.other, clock).sign(etree.fromstring(REQUEST))))
    with pytest.raises(AuthenticationFailed, match="not signed"):
        plugin.verify(etree.fromstring(REQUEST))


class _Loopback:
    """A zeep transport that hands each request to ``answer`` instead of the network."""

    def __init__(self, answer):
        import zeep

        self._inner = zeep.Transport()
        self.answer = answer
        self.sent: list[etree._Element] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def post_xml(self, address, envelope, headers):
        import requests

        self.sent.append(wire(envelope))
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "text/xml; charset=utf-8"
        response._content = etree.tostring(self.answer(self.sent[-1]))
        return response


def test_plugin_through_a_zeep_call(pki):
    """A real zeep call from the WSDL: WS-Addressing and WorkspaceKey headers signed, signed reply verified."""
    import zeep

    from clients.session import Addressing200403
    from vws.wsrf.addressing import EndpointReference, key_property
    from vws.xmlns import SOAP_ENV, WORKSPACE, WSA

    clock = ManualClock(NOW)
    server = MessageVerifier(TrustStore(pki.trust_dir), clock)
    host = MessageSigner(pki.host, clock)
    seen = {}

    def answer(request):
        verified = server.verify(request)
        seen["request"] = verified
        reply = etree.fromstring(
            f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:wsa="{WSA}"><s:Header>'
            f"<wsa:Action>http://www.globus.org/2008/06/workspace/WorkspacePortType/startResponse</wsa:Action>"
            f'</s:Header><s:Body><w:startWorkspaceResponse xmlns:w="{WORKSPACE}"/></s:Body></s:Envelope>'
        )
        return host.sign(reply)

    address = "https://localhost:8443/wsrf/services/WorkspaceService"
    target = EndpointReference(address, (key_property(f"{{{WORKSPACE}}}WorkspaceKey", "7"),))
    plugin = GsiSecureMessage(
        pki.proxy(), TrustStore(pki.trust_dir), clock, server_identity="/O=Grid/OU=vws-test/CN=host/localhost"
    )
    wsdl = Path(__file__).resolve().parents[1] / "wsdl" / "WorkspaceService.wsdl"
    transport = _Loopback(answer)
    client = zeep.Client(str(wsdl), transport=transport, plugins=[Addressing200403(target)], wsse=plugin)
    service = client.create_service(next(iter(client.wsdl.bindings)), address)
    service.start()
    verified = seen["request"]
    assert verified.identity == USER_DN
    tags = {etree.QName(h).localname for h in verified.signed_headers}
    assert {"To", "Action", "MessageID", "WorkspaceKey"} <= tags
    assert plugin.last_reply.identity == "/O=Grid/OU=vws-test/CN=host/localhost"
