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
import requests
import zeep
from lxml import etree

from clients.proxy_init import main as proxy_init
from clients.session import Addressing200403
from clients.wsse import GsiSecureMessage
from tests import security_helpers
from tests.security_helpers import NOW, REQUEST, USER_DN, wire
from vws.clock import ManualClock
from vws.errors import AuthenticationFailed
from vws.security.credentials import Credential
from vws.security.proxy import LIMITED, proxy_cert_info
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import SOAP_ENV, TYPES, WORKSPACE, WSA, WSNT, WSRL, WSRP

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


FLAG_SETS = {
    "default": ([], "impersonation", None, 2048),
    "limited": (["-limited"], "limited", None, 2048),
    "path-length-0": (["-path-length", "0"], "impersonation", 0, 2048),
    "path-length-3-1h-3072": (["-path-length", "3", "-hours", "1", "-bits", "3072"], "impersonation", 3, 3072),
}


@pytest.fixture(scope="module", params=sorted(FLAG_SETS))
def made(request, pki, tmp_path_factory):
    """(proxy file, kind, path length, bits, stdout) of one vws-proxy-init run as a subprocess."""
    flags, kind, path_length, bits = FLAG_SETS[request.param]
    out = tmp_path_factory.mktemp("proxy") / "x509up"
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "clients.proxy_init"]
    run = subprocess.run(
        command + ["-out", str(out), *flags], env=_env(pki), check=True, capture_output=True, text=True
    )
    return out, kind, path_length, bits, run.stdout


def test_vws_proxy_init_writes_what_grid_proxy_init_writes(made):
    out, _, _, _, stdout = made
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    blocks = re.findall(r"-----BEGIN ([A-Z ]+)-----", out.read_text())
    assert blocks == ["CERTIFICATE", "RSA PRIVATE KEY", "CERTIFICATE"]
    assert stdout.splitlines()[0] == f"Your identity: {USER_DN}"
    assert re.fullmatch(r"Your proxy is valid until: \w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4}", stdout.splitlines()[-1])


@pytest.mark.skipif(
    shutil.which("grid-proxy-info") is None, reason="grid-proxy-info (globus-proxy-utils) not installed"
)
def test_grid_proxy_info_reads_vws_proxies(pki, made):
    out, kind, _, bits, _ = made
    info = subprocess.run(
        ["grid-proxy-info", "-file", str(out)], env=_env(pki), capture_output=True, text=True, check=True
    ).stdout
    assert f"identity : {USER_DN}" in info
    assert f"RFC 3820 compliant {kind} proxy" in info
    assert f"strength : {bits} bits" in info


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_vws_proxies(pki, made):
    out = made[0]
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-allow_proxy_certs",
            "-CAfile",
            str(pki.root / "cacert.pem"),
            "-untrusted",
            str(pki.root / "user" / "cert.pem"),
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr


def test_vws_proxies_validate_with_their_policy(pki, made):
    out, kind, path_length, _, _ = made
    cred = Credential.load(out)
    info, critical = proxy_cert_info(cred.certificate)
    assert critical and info.path_length == path_length and (info.policy_language == LIMITED) == (kind == "limited")
    clock = ManualClock(cred.certificate.not_valid_before_utc + timedelta(minutes=10))
    result = ChainValidator(TrustStore(pki.trust_dir), clock).validate(cred.chain)
    assert result.identity == USER_DN and result.limited == (kind == "limited")


def test_valid_hours_minutes(pki, tmp_path):
    out = tmp_path / "p.pem"
    user = pki.root / "user"
    files = ["-cert", str(user / "cert.pem"), "-key", str(user / "key.pem"), "-out", str(out)]
    assert proxy_init([*files, "-q", "-valid", "1:30"]) == 0
    cert = Credential.load(out).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=1, minutes=35)  # 5 min backdated


def test_missing_user_certificate(tmp_path, capsys):
    assert proxy_init(["-cert", str(tmp_path / "none.pem"), "-key", str(tmp_path / "none.key")]) == 1
    assert "cannot load the user credential" in capsys.readouterr().err


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


def test_encrypted_key_with_pwstdin(pki, tmp_path, monkeypatch, capsys):
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
    capsys.readouterr()
    assert (
        proxy_init(["-cert", str(pki.root / "user" / "cert.pem"), "-key", str(key), "-out", str(out), "-pwstdin"]) == 1
    )
    assert capsys.readouterr().err == "vws-proxy-init: wrong pass phrase\n"


# -- the zeep plugin -----------------------------------------------------------------------------------

HOST_DN = "/O=Grid/OU=vws-test/CN=host/localhost"
ADDRESS = "https://localhost:8443/wsrf/services/WorkspaceService"
START_REPLY = (
    f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:wsa="{WSA}"><s:Header>'
    f"<wsa:Action>{WORKSPACE}/WorkspacePortType/startResponse</wsa:Action>"
    f'</s:Header><s:Body><w:startWorkspaceResponse xmlns:w="{WORKSPACE}"/></s:Body></s:Envelope>'
)
UNSIGNED_FAULT = (
    f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><s:Fault><faultcode>s:Client</faultcode>'
    "<faultstring>/O=Grid/CN=Jane is not in the grid-mapfile</faultstring></s:Fault></s:Body></s:Envelope>"
)


def test_plugin_signs_addressing_and_workspace_headers_and_verifies_replies(pki):
    clock = ManualClock(NOW)
    plugin = GsiSecureMessage(pki.proxy(), TrustStore(pki.trust_dir), clock, server_identity=HOST_DN)
    envelope, _ = plugin.apply(etree.fromstring(REQUEST), {})
    server = MessageVerifier(TrustStore(pki.trust_dir), clock)
    verified = server.verify(wire(envelope))
    assert verified.identity == USER_DN
    assert len(verified.signed_headers) == 4  # To, Action, MessageID, WorkspaceKey
    reply = MessageSigner(pki.host, clock).sign(etree.fromstring(REQUEST))
    plugin.verify(wire(reply))
    assert plugin.last_reply.identity == HOST_DN


TOPIC_REPLY = (
    f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:wsa="{WSA}"><s:Header><wsa:Action>{WSRP}/GetResourcePropertyResponse'
    f'</wsa:Action></s:Header><s:Body><p:GetResourcePropertyResponse xmlns:p="{WSRP}"><n:Topic xmlns:n="{WSNT}" '
    f'xmlns:tns="{TYPES}">tns:currentState</n:Topic></p:GetResourcePropertyResponse></s:Body></s:Envelope>'
)


def test_plugin_hands_zeep_the_reply_as_signed(pki):
    """A QName in a reply's text is signed with its binding: rebound in transit it is refused, and zeep reads
    the Body as it was digested."""
    clock = ManualClock(NOW)
    plugin = GsiSecureMessage(pki.proxy(), TrustStore(pki.trust_dir), clock, server_identity=HOST_DN)
    reply = etree.tostring(MessageSigner(pki.host, clock).sign(etree.fromstring(TOPIC_REPLY)))
    rebound = reply.replace(f'xmlns:tns="{TYPES}"'.encode(), f'xmlns:tns="{WSRL}"'.encode())
    with pytest.raises(AuthenticationFailed, match="digest of .*Body does not match"):
        plugin.verify(etree.fromstring(rebound))
    received = etree.fromstring(reply)
    plugin.verify(received)
    assert received.find(f"{{{SOAP_ENV}}}Body") is plugin.last_reply.body
    topic = plugin.last_reply.body.find(f".//{{{WSNT}}}Topic")
    assert topic.nsmap["tns"] == TYPES


def test_plugin_refuses_a_reply_from_the_wrong_signer(pki):
    clock = ManualClock(NOW)
    plugin = GsiSecureMessage(pki.proxy(), TrustStore(pki.trust_dir), clock, server_identity=HOST_DN)
    with pytest.raises(AuthenticationFailed, match="not by the expected service"):
        plugin.verify(wire(MessageSigner(pki.other, clock).sign(etree.fromstring(REQUEST))))
    with pytest.raises(AuthenticationFailed, match="not signed"):
        plugin.verify(etree.fromstring(REQUEST))


class _Loopback:
    """A zeep transport that hands each request to ``answer`` instead of the network."""

    def __init__(self, answer):
        self._inner = zeep.Transport()
        self.answer = answer

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def post_xml(self, address, envelope, headers):
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "text/xml; charset=utf-8"
        response._content = etree.tostring(self.answer(wire(envelope)))
        return response


def _zeep_start(plugin: GsiSecureMessage, answer) -> None:
    """Call the workspace ``start`` operation through zeep, from the WSDL, with ``answer`` as the service."""
    target = EndpointReference(ADDRESS, (key_property(f"{{{WORKSPACE}}}WorkspaceKey", "7"),))
    wsdl = Path(__file__).resolve().parents[1] / "wsdl" / "WorkspaceService.wsdl"
    client = zeep.Client(str(wsdl), transport=_Loopback(answer), plugins=[Addressing200403(target)], wsse=plugin)
    client.create_service(next(iter(client.wsdl.bindings)), ADDRESS).start()


def test_plugin_through_a_zeep_call(pki):
    """A real zeep call: WS-Addressing and WorkspaceKey headers signed, the signed reply verified."""
    clock = ManualClock(NOW)
    server = MessageVerifier(TrustStore(pki.trust_dir), clock)
    host = MessageSigner(pki.host, clock)
    seen = []

    def answer(request):
        seen.append(server.verify(request))
        return host.sign(etree.fromstring(START_REPLY))

    plugin = GsiSecureMessage(pki.proxy(), TrustStore(pki.trust_dir), clock, server_identity=HOST_DN)
    _zeep_start(plugin, answer)
    [verified] = seen
    assert verified.identity == USER_DN
    assert {etree.QName(h).localname for h in verified.signed_headers} >= {"To", "Action", "MessageID", "WorkspaceKey"}
    assert plugin.last_reply.identity == HOST_DN


@pytest.mark.parametrize(
    "reply, refusal, reason",
    [
        (UNSIGNED_FAULT, zeep.exceptions.Fault, "not in the grid-mapfile"),
        (START_REPLY, AuthenticationFailed, "not signed"),
    ],
    ids=["unsigned fault shown", "unsigned answer refused"],
)
def test_unsigned_replies(pki, reply, refusal, reason):
    """The service cannot sign its refusal of a request it could not authenticate: the user must see it."""
    plugin = GsiSecureMessage(pki.proxy(), TrustStore(pki.trust_dir), ManualClock(NOW))
    with pytest.raises(refusal, match=reason):
        _zeep_start(plugin, lambda request: etree.fromstring(reply))
    assert plugin.last_reply is None
