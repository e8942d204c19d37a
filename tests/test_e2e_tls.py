"""GSI Transport end to end: HTTPS with a proxy client certificate names the caller."""

import http.client
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree

from tests import contexts
from tests.gt4wire import FACTORY_ACTION, SAMPLES, Gt4Client, SoapFault, create_body, created_eprs, envelope
from vws.cli.admin import main as admin
from vws.clock import ManualClock, SystemClock
from vws.config import Config
from vws.security import tls
from vws.security.ca import DevCA, make_ca
from vws.security.credentials import Credential
from vws.security.proxy import create_proxy
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.xmlns import CTX, SOAP_ENV, WORKSPACE, qname


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("tls")
    assert admin(["--state-dir", str(state), "ca", "init", "--hostname", "localhost"]) == 0
    return state


def tls_service(state_dir: Path, **front: object) -> Service:
    front = {"agent_listen": "127.0.0.1:0", **front}
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir, **front)
    config = config.with_overrides("security", tls=True, require_signature=False)
    return Service(config, clock=ManualClock(SystemClock().now()))


@pytest.fixture
def service(state_dir):
    running = tls_service(state_dir)
    running.start()
    yield running
    running.stop()


def proxy_file(state_dir: Path, issuer: Credential, name: str) -> Path:
    return create_proxy(issuer, SystemClock()).write(state_dir / name)


def port_of(service: Service) -> int:
    return int(service.base_url.split(":")[2].split("/")[0])


def create_over(service: Service, context: ssl.SSLContext, timeout: float = 30) -> etree._Element:
    url = service.base_url + "WorkspaceFactoryService"
    body = create_body(
        etree.parse(str(SAMPLES / "workspace.xml")).getroot(),
        etree.parse(str(SAMPLES / "deployment-request.xml")).getroot(),
    )
    connection = http.client.HTTPSConnection("127.0.0.1", port_of(service), context=context, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/wsrf/services/WorkspaceFactoryService",
            envelope(url, FACTORY_ACTION + "createRequest", body),
            {"Content-Type": "text/xml"},
        )
        return etree.fromstring(connection.getresponse().read()).find(qname(SOAP_ENV, "Body"))[0]
    finally:
        connection.close()


def test_a_proxy_client_certificate_is_the_callers_identity(service, state_dir):
    assert service.base_url.startswith("https://")
    dev = DevCA(state_dir / "security")
    proxy = proxy_file(state_dir, dev.user(), "proxy.pem")
    reply = create_over(service, tls.client_context(proxy, dev.trust_dir))
    assert reply.tag == qname(WORKSPACE, "createResponse")
    (workspace,) = service.manager.workspaces(SERVICE)
    assert workspace.owner == "/O=Grid/OU=vws/OU=local/CN=vws user"


def test_a_certificate_from_another_ca_fails_the_handshake(service, state_dir):
    foreign = make_ca("/O=Elsewhere/CN=Foreign CA", SystemClock())
    proxy = proxy_file(state_dir, foreign, "foreign.pem")
    before = service.manager.workspaces(SERVICE)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        create_over(service, tls.client_context(proxy, DevCA(state_dir / "security").trust_dir))
    assert service.manager.workspaces(SERVICE) == before


def test_a_silent_connection_does_not_stall_tls_clients(service, state_dir):
    dev = DevCA(state_dir / "security")
    context = tls.client_context(proxy_file(state_dir, dev.user(), "proxy.pem"), dev.trust_dir)
    with socket.create_connection(("127.0.0.1", port_of(service))):  # connects and never says hello
        reply = create_over(service, context, timeout=5)  # cheroot shook hands in its accept loop: ~10 s
    assert reply.tag == qname(WORKSPACE, "createResponse")


def test_a_silent_connection_is_closed_at_the_handshake_deadline(state_dir):
    running = tls_service(state_dir, request_header_timeout_ms=500)
    running.start()
    try:
        with socket.create_connection(("127.0.0.1", port_of(running)), timeout=5) as silent:
            assert silent.recv(1) == b""  # closed by the server, well before this socket's own timeout
    finally:
        running.stop()


def test_a_proxy_of_a_proxy_names_its_end_entity_through_the_verified_chain(service, state_dir):
    # From the leaf alone the caller would be the upper proxy (.../CN=vws user/CN=<serial>), unmapped.
    dev = DevCA(state_dir / "security")
    upper = create_proxy(dev.user(), SystemClock())
    reply = create_over(service, tls.client_context(proxy_file(state_dir, upper, "proxy2.pem"), dev.trust_dir))
    (created,) = created_eprs(reply)
    workspace = service.manager.get(SERVICE, int(created.key(qname(WORKSPACE, "WorkspaceKey"))))
    assert workspace.owner == "/O=Grid/OU=vws/OU=local/CN=vws user"


def test_a_context_agent_without_a_certificate_reports_on_its_own_listener(service, state_dir):
    dev = DevCA(state_dir / "security")
    gt4 = Gt4Client(
        service.base_url, tls=tls.client_context(proxy_file(state_dir, dev.user(), "proxy.pem"), dev.trust_dir)
    )
    try:
        context = contexts.create_context(gt4)
        assert context.broker_url == service.agent_url and context.broker_url.startswith("http://")
        ((ip, name),) = contexts.addresses(contexts.join(gt4, context.epr, lock=True))
        # Plain HTTP, no client certificate: what a guest's curl or busybox wget can do.
        status, answer = contexts.agent_post(context, "retrieve", contexts.identity_line(ip, name))
        assert (status, contexts.state_of(answer)) == (200, "complete")
        assert contexts.agent_post(context, "ok", contexts.identity_line(ip, name))[0] == 200
        assert contexts.status(gt4, context.epr)["allOK"] == "true"
    finally:
        gt4.close()


def test_without_an_agents_listener_a_tls_service_refuses_contexts_and_serves_the_rest(state_dir):
    running = tls_service(state_dir, agent_listen="")
    running.start()
    dev = DevCA(state_dir / "security")
    context = tls.client_context(proxy_file(state_dir, dev.user(), "proxy.pem"), dev.trust_dir)
    gt4 = Gt4Client(running.base_url, tls=context)
    try:
        with pytest.raises(SoapFault) as refused:
            contexts.create_context(gt4)
        assert refused.value.element == qname(CTX, "NimbusContextualizationFault")
        assert "[service] agent_listen" in refused.value.description
        created_eprs(create_over(running, context))  # everything else is served
    finally:
        gt4.close()
        running.stop()


@pytest.mark.parametrize(("method", "path"), [("POST", "/wsrf/services/WorkspaceFactoryService"), ("GET", "/status")])
def test_the_agents_listener_serves_nothing_but_the_agents_door(service, method, path):
    parts = urlsplit(service.agent_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, b"" if method == "POST" else None, {"Content-Type": "text/xml"})
        assert connection.getresponse().status == 404
    finally:
        connection.close()
