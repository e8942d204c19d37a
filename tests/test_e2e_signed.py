"""GSI Secure Message end to end: a signed-by-default service, real proxies, real attacks.

The service runs as `vws-admin ca init` leaves it: the development CA, host credential
and grid-mapfile in its state dir, and no --insecure.
"""

import copy
import queue
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lxml import etree

from tests.deployments import settler
from tests.gt4wire import FACTORY_ACTION, SAMPLES, Gt4Client, SoapFault, create_body, created_eprs, envelope_element
from tests.resources import subscribe
from vws.cli.admin import main as admin
from vws.clock import ManualClock, SystemClock
from vws.config import Config
from vws.security import ca
from vws.security.ca import DevCA
from vws.security.proxy import create_proxy
from vws.security.trust import TrustStore
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.wsrf.addressing import EndpointReference
from vws.wsrf.notification import parse_notify
from vws.xmlns import SOAP_ENV, TYPES, WORKSPACE, WSSE, qname

OTHER_DN = "/O=Grid/OU=vws/OU=local/CN=another user"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    state = tmp_path_factory.mktemp("signed")
    assert admin(["--state-dir", str(state), "ca", "init", "--hostname", "localhost"]) == 0
    return state


@pytest.fixture
def clock():
    return ManualClock(SystemClock().now())  # the dev CA's certificates are valid from the real now


@pytest.fixture
def service(state_dir, clock):
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir)
    running = Service(config, clock=clock)
    running.start()
    yield running
    for workspace in running.manager.workspaces(SERVICE):  # the module's tests share the state dir's addresses
        running.manager.destroy(SERVICE, workspace.id)
    running.stop()


def user_proxy(state_dir, clock, **options):
    return create_proxy(DevCA(state_dir / "security").user(), clock, **options)


@pytest.fixture
def signer(state_dir, clock):
    return MessageSigner(user_proxy(state_dir, clock), clock)


@pytest.fixture
def alice(service, signer):
    client = Gt4Client(service.base_url, sign=signer.sign, settle=settler(service))
    yield client
    client.close()


def signed_create(service, signer) -> bytes:
    body = create_body(
        etree.parse(str(SAMPLES / "workspace.xml")).getroot(),
        etree.parse(str(SAMPLES / "deployment-request.xml")).getroot(),
    )
    message = envelope_element(service.base_url + "WorkspaceFactoryService", FACTORY_ACTION + "createRequest", body)
    signer.sign(message)
    return message


def post(service, message: etree._Element) -> etree._Element:
    client = Gt4Client(service.base_url)
    try:
        _, reply = client.post(service.base_url + "WorkspaceFactoryService", etree.tostring(message))
    finally:
        client.close()
    return reply.find(qname(SOAP_ENV, "Body"))[0]


def assert_refused(service, message, words: str) -> None:
    before = len(service.manager.workspaces(SERVICE))
    payload = post(service, message)
    assert payload.tag == qname(SOAP_ENV, "Fault") and payload.findtext("faultcode") == "soapenv:Client"
    assert words in payload.findtext("faultstring")
    assert len(service.manager.workspaces(SERVICE)) == before


def test_signed_deploy_query_destroy_with_signed_replies(alice, service, state_dir, clock):
    (epr,) = created_eprs(alice.create())
    assert alice.state(epr) == "Running"
    reply = copy.deepcopy(alice.last_reply)
    verified = MessageVerifier(TrustStore(DevCA(state_dir / "security").trust_dir), clock).verify(reply)
    assert verified.identity.endswith("/CN=host/localhost")
    owner = service.manager.workspaces(SERVICE)[0].owner
    assert owner == "/O=Grid/OU=vws/OU=local/CN=vws user"  # the end entity behind the proxy
    alice.destroy(epr)
    assert service.manager.workspaces(SERVICE) == []


def test_unsigned_is_refused(service):
    message = envelope_element(
        service.base_url + "WorkspaceFactoryService",
        FACTORY_ACTION + "createRequest",
        etree.Element(qname(WORKSPACE, "create")),
    )
    assert_refused(service, message, "Security")


def test_tampered_body_is_refused(service, signer):
    message = signed_create(service, signer)
    message.find(f".//{{{TYPES}}}resourceRequest//{{*}}Exact").text = "1024"
    assert_refused(service, message, "digest")


def test_replay_is_refused(service, signer):
    message = signed_create(service, signer)
    assert post(service, message).tag == qname(WORKSPACE, "createResponse")
    assert_refused(service, message, "replay")


def test_stale_timestamp_is_refused(service, signer, clock):
    message = signed_create(service, signer)
    clock.advance(timedelta(minutes=20))  # past max age + skew (10 min), inside the 30-minute leases
    assert_refused(service, message, "Timestamp")


def test_signed_body_moved_into_a_header_with_a_forged_body_is_refused(service, signer):
    message = signed_create(service, signer)
    body = message.find(qname(SOAP_ENV, "Body"))
    header = message.find(qname(SOAP_ENV, "Header"))
    wrapper = etree.SubElement(header, "{urn:attacker}Wrapper")
    wrapper.append(copy.deepcopy(body))
    forged = body[0]
    forged.find(f".//{{{TYPES}}}resourceRequest//{{*}}Exact").text = "4096"
    assert_refused(service, message, "")  # whichever check trips first, nothing forged is acted on


def test_another_users_proxy_cannot_see_or_touch_the_workspace(alice, service, state_dir, clock):
    (epr,) = created_eprs(alice.create())
    security = DevCA(state_dir / "security")
    authority = ca.Credential.load(security.root / "ca" / "cacert.pem", security.root / "ca" / "cakey.pem")
    other = ca.issue(authority, OTHER_DN, clock)
    with security.gridmap.open("a") as mapfile:
        mapfile.write(f'"{OTHER_DN}" other\n')
    bob = Gt4Client(service.base_url, sign=MessageSigner(create_proxy(other, clock), clock).sign)
    try:
        for attempt in (bob.state, bob.destroy):
            with pytest.raises(SoapFault) as refused:
                attempt(epr)
            assert "no workspace" in refused.value.description
    finally:
        bob.close()
    assert alice.state(epr) == "Running"


def test_a_user_not_in_the_grid_mapfile_is_refused(service, state_dir, clock):
    security = DevCA(state_dir / "security")
    authority = ca.Credential.load(security.root / "ca" / "cacert.pem", security.root / "ca" / "cakey.pem")
    stranger = ca.issue(authority, "/O=Grid/OU=vws/OU=local/CN=stranger", clock)
    message = signed_create(service, MessageSigner(create_proxy(stranger, clock), clock))
    assert_refused(service, message, "grid-mapfile")


def test_a_limited_proxy_may_not_create(service, state_dir, clock):
    limited = MessageSigner(user_proxy(state_dir, clock, limited=True), clock)
    payload = post(service, signed_create(service, limited))
    assert payload.find("detail")[0].tag == qname(TYPES, "WorkspaceResourceRequestDeniedFault")


def test_security_header_must_be_understood(service, signer):
    message = signed_create(service, signer)
    security = message.find(f".//{{{WSSE}}}Security")
    assert security.get(qname(SOAP_ENV, "mustUnderstand")) == "1"


@pytest.fixture
def consumer(request):
    """A bare HTTP consumer that keeps every POSTed envelope as it arrived (and, with ``indirect``
    parametrization, first refuses that many deliveries with a 503)."""
    received: queue.Queue[bytes] = queue.Queue()
    refusals = [getattr(request, "param", 0)]

    class Consumer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            data = self.rfile.read(int(self.headers["Content-Length"]))
            refused, refusals[0] = refusals[0] > 0, refusals[0] - 1
            if not refused:
                received.put(data)
            self.send_response(503 if refused else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Consumer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield EndpointReference(f"http://127.0.0.1:{server.server_address[1]}/"), received
    server.shutdown()
    thread.join()


@pytest.mark.parametrize("consumer", [0, 1], indirect=True, ids=["delivered", "retried"])
def test_notifications_are_signed_by_the_service(alice, state_dir, clock, consumer):
    """Each delivery attempt is signed afresh: a retried notification was signed twice and never sent."""
    reference, received = consumer
    (epr,) = created_eprs(alice.create())
    subscribe(alice, epr, reference, qname(TYPES, "currentState"))
    alice.shutdown(epr, "Pause")
    notify = etree.fromstring(received.get(timeout=10))
    verified = MessageVerifier(TrustStore(DevCA(state_dir / "security").trust_dir), clock).verify(notify)
    assert verified.identity.endswith("/CN=host/localhost")
    (notification,) = parse_notify(verified.body[0])  # the topic's prefix is signed with its binding
    assert notification.topic == qname(TYPES, "currentState") and b"Paused" in etree.tostring(notification.message)
