"""The HTTP front over real sockets: whole requests before workers, deadlines, limits, a real backlog.

The services here run with 2 workers, so a front that let an unfinished request hold a
worker would be locked by a handful of slow connections, and with deadlines of about a
second, so each one is seen to expire in bounded time.
"""

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from urllib.parse import urlsplit

import pytest
from lxml import etree

from tests.callers import serve
from tests.conftest import make_config
from tests.gt4wire import Gt4Client, SoapFault, envelope
from vws.config import ConfigError
from vws.service import Service
from vws.xmlns import SOAP_ENV, TYPES, WSRP, WSRP_ACTION, qname

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
FRONT = {"threads": 2, "request_header_timeout_ms": 1000, "request_body_timeout_ms": 1000}
PROMPT = 5  # seconds: a call that waits for a worker held by a slow client takes longer (cheroot: 10 s)


@pytest.fixture
def service(tmp_path, clock) -> Iterator[Service]:
    with serve(tmp_path / "state", clock, service=FRONT) as running:
        yield running


def address(service: Service) -> tuple[str, int]:
    parts = urlsplit(service.base_url)
    return parts.hostname, parts.port


def property_request(service: Service, padding: int = 0) -> bytes:
    """GetResourceProperty MaximumRunningTime of the factory, with ``padding`` bytes in a header."""
    to = service.base_url + "WorkspaceFactoryService"
    body = etree.Element(qname(WSRP, "GetResourceProperty"), nsmap={"wsrp": WSRP, "t": TYPES})
    body.text = "t:MaximumRunningTime"
    document = etree.fromstring(envelope(to, WSRP_ACTION + "GetResourceProperty", body))
    if padding:
        etree.SubElement(document.find(qname(SOAP_ENV, "Header")), "{urn:test}padding").text = "x" * padding
    return etree.tostring(document)


def http_post(body: bytes, extra: bytes = b"") -> bytes:
    head = b"POST /wsrf/services/WorkspaceFactoryService HTTP/1.1\r\nHost: vws\r\nContent-Type: text/xml\r\n"
    return head + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


def prompt_call(service: Service) -> None:
    """A SOAP call on a new connection that must be answered within PROMPT seconds."""
    client = Gt4Client(service.base_url, timeout=PROMPT)
    try:
        assert client.get_property(client.factory(), qname(TYPES, "MaximumRunningTime")) is not None
    finally:
        client.close()


def reply_to(connection: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(connection)
    response.begin()
    return response.status, response.read()


def fault_of(reply: bytes) -> SoapFault:
    return SoapFault(0, etree.fromstring(reply).find(qname(SOAP_ENV, "Body"))[0])


def closed(connection: socket.socket) -> bool:
    """Whether the server has closed ``connection`` (read to the end, within PROMPT seconds)."""
    connection.settimeout(PROMPT)
    try:
        while connection.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def open_connections(stack: ExitStack, service: Service, count: int) -> list[socket.socket]:
    return [stack.enter_context(socket.create_connection(address(service), timeout=PROMPT)) for _ in range(count)]


def trickle(connections: list[socket.socket], pieces: list[bytes], stop: threading.Event) -> threading.Thread:
    """Send each connection one piece at a time, every 0.1 s, until the server closes it or ``stop``."""

    def run() -> None:
        for piece in pieces:
            for connection in connections:
                try:
                    connection.sendall(piece)
                except OSError:
                    pass
            if stop.wait(0.1):
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_idle_connections_hold_no_worker(tmp_path, clock):
    # No deadline can save this one: the idle connections are younger than every timeout.
    with serve(tmp_path / "state", clock, service={"threads": 2}) as service, ExitStack() as stack:
        open_connections(stack, service, 200)
        prompt_call(service)


def test_slowloris_heads_hold_no_worker_and_are_cut_at_the_header_deadline(service):
    slow_lines = [b"X-Slow-%d: 1\r\n" % n for n in range(100)]  # 10 s of header lines, one every 0.1 s
    with ExitStack() as stack:
        slow = open_connections(stack, service, 20)
        stop = threading.Event()
        started = time.monotonic()
        trickle(slow, [b"POST /wsrf/services/WorkspaceFactoryService HTTP/1.1\r\n", *slow_lines], stop)
        prompt_call(service)
        statuses = [reply_to(connection)[0] for connection in slow]
        waited = time.monotonic() - started
        stop.set()
    assert statuses == [408] * 20
    assert 0.9 < waited < 1 + PROMPT  # the deadline, although a line arrived every 0.1 s


def test_a_kept_alive_connections_next_head_is_cut_at_its_own_header_deadline(service):
    # The connection's timer was set for its first request; the next request's head deadline
    # counts from that head's first byte, however long the connection was idle before it.
    slow_lines = [b"X-Slow-%d: 1\r\n" % n for n in range(100)]
    with socket.create_connection(address(service), timeout=PROMPT) as connection:
        connection.sendall(http_post(property_request(service)))
        assert reply_to(connection)[0] == 200
        time.sleep(1.5)  # idle past the first request's header deadline (not a wait for an event)
        stop = threading.Event()
        started = time.monotonic()
        trickle([connection], [b"POST /wsrf/services/WorkspaceFactoryService HTTP/1.1\r\n", *slow_lines], stop)
        status = reply_to(connection)[0]
        waited = time.monotonic() - started
        stop.set()
    assert status == 408
    assert 0.9 < waited < 1 + PROMPT


def test_stalled_uploads_hold_no_worker_and_are_cut_at_the_body_deadline(service):
    request = http_post(property_request(service))
    with ExitStack() as stack:
        stalled = open_connections(stack, service, 20)
        for connection in stalled:
            connection.sendall(request[:-100])
        prompt_call(service)
        replies = [reply_to(connection) for connection in stalled]
    assert {status for status, _ in replies} == {408}
    assert "request body not received within 1.0 s" in fault_of(replies[0][1]).description


def test_a_silent_new_connection_is_closed_at_the_header_deadline(service):
    with socket.create_connection(address(service)) as silent:
        assert closed(silent)


def test_an_idle_keepalive_connection_is_closed_and_the_client_reconnects(tmp_path, clock):
    with serve(tmp_path / "state", clock, service={"keepalive_timeout_ms": 200}) as service:
        client = Gt4Client(service.base_url, timeout=PROMPT)
        factory = client.factory()
        client.get_property(factory, qname(TYPES, "MaximumRunningTime"))
        kept = client._connection.sock
        client.get_property(factory, qname(TYPES, "MaximumRunningTime"))
        assert client._connection.sock is kept  # keep-alive: the second call reused the connection
        assert closed(kept)  # idle past the deadline: the server closed it
        client.get_property(factory, qname(TYPES, "MaximumRunningTime"))  # before sending: a new connection
        client.close()


def test_a_burst_of_new_connections_is_taken_without_drops_or_resets(service):
    # A full listen queue drops SYNs: the client retries after TCP's initial 1 s timeout.
    request, start = http_post(property_request(service)), threading.Barrier(200)

    def connect_and_call(_: int) -> tuple[float, int]:
        start.wait()
        began = time.monotonic()
        with socket.create_connection(address(service), timeout=PROMPT) as connection:
            connected = time.monotonic() - began
            connection.sendall(request)
            return connected, reply_to(connection)[0]  # a reset raises here

    with ThreadPoolExecutor(200) as burst:
        outcomes = list(burst.map(connect_and_call, range(200)))
    assert max(connected for connected, _ in outcomes) < 1
    assert {status for _, status in outcomes} == {200}


def test_a_head_beyond_the_limit_gets_431_and_the_service_goes_on(service):
    huge = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(1000))  # 1 MB of header fields
    with socket.create_connection(address(service), timeout=PROMPT) as connection:
        sender = threading.Thread(target=lambda: _send_quietly(connection, http_post(b"", huge)), daemon=True)
        sender.start()
        status, reply = reply_to(connection)
    assert status == 431
    assert fault_of(reply).code == "soapenv:Client"
    prompt_call(service)


def test_a_head_within_the_limit_is_served(service):
    with socket.create_connection(address(service), timeout=PROMPT) as connection:
        connection.sendall(http_post(property_request(service), b"X-Pad: %s\r\n" % (b"a" * 30000)))
        assert reply_to(connection)[0] == 200


def _send_quietly(connection: socket.socket, data: bytes) -> None:
    try:
        connection.sendall(data)
    except OSError:
        pass  # the server refused and closed before taking it all


@pytest.fixture
def small_body_service(tmp_path, clock) -> Iterator[Service]:
    with serve(tmp_path / "state", clock, service={**FRONT, "max_body_kb": 64}) as running:
        yield running


def test_a_declared_body_beyond_the_limit_gets_413_with_a_soap_fault(small_body_service):
    request = http_post(property_request(small_body_service, padding=100_000))
    with socket.create_connection(address(small_body_service), timeout=PROMPT) as connection:
        connection.sendall(request[: request.index(b"\r\n\r\n") + 4])  # the head alone is enough to refuse
        status, reply = reply_to(connection)
    assert status == 413
    fault = fault_of(reply)
    assert fault.code == "soapenv:Client"
    assert "exceeds the limit of 65536 bytes" in fault.description


def test_a_chunked_body_beyond_the_limit_gets_413(small_body_service):
    connection = http.client.HTTPConnection(*address(small_body_service), timeout=PROMPT)
    body = iter([property_request(small_body_service, padding=100_000)])
    connection.request("POST", "/wsrf/services/WorkspaceFactoryService", body, {"Content-Type": "text/xml"})
    assert connection.getresponse().status == 413
    connection.close()


def test_chunked_trailers_count_toward_the_limit(small_body_service):
    trailer = b"X-Trailer: " + b"a" * 200_000  # never ends: the parser would buffer it all
    request = http_post(b"", b"Transfer-Encoding: chunked\r\n").replace(b"Content-Length: 0\r\n", b"")
    with socket.create_connection(address(small_body_service), timeout=PROMPT) as connection:
        connection.sendall(request + b"1\r\na\r\n0\r\n" + trailer)
        assert reply_to(connection)[0] == 413


def test_a_body_within_the_configured_limit_is_served(small_body_service):
    client = Gt4Client(small_body_service.base_url, timeout=PROMPT)
    status, reply = client.post(client.factory().address, property_request(small_body_service, padding=60_000))
    client.close()
    assert status == 200 and reply.find(f".//{{{TYPES}}}MaximumRunningTime") is not None


def test_a_body_up_to_the_documented_4_mb_is_served(gt4, service):
    status, reply = gt4.post(gt4.factory().address, property_request(service, padding=3_500_000))
    assert status == 200 and reply.find(f".//{{{TYPES}}}MaximumRunningTime") is not None


def test_a_chunked_request_is_served(service):
    connection = http.client.HTTPConnection(*address(service), timeout=PROMPT)
    body = iter([property_request(service)])  # an iterable body goes chunked
    connection.request("POST", "/wsrf/services/WorkspaceFactoryService", body, {"Content-Type": "text/xml"})
    response = connection.getresponse()
    assert response.status == 200 and b"MaximumRunningTime" in response.read()
    connection.close()


def test_expect_100_continue_is_answered_before_the_body(service):
    body = property_request(service)
    request = http_post(body, b"Expect: 100-continue\r\n")
    with socket.create_connection(address(service), timeout=PROMPT) as connection:
        connection.sendall(request[: -len(body)])
        assert connection.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        assert reply_to(connection)[0] == 200


def test_pipelined_requests_are_answered_in_order(service):
    first, second = http_post(property_request(service)), http_post(b"<not-soap/>")
    with socket.create_connection(address(service), timeout=PROMPT) as connection:
        connection.sendall(first + second)  # the second goes before the first is answered
        replies = connection.makefile("rb")
        statuses = [_reply_from(replies) for _ in range(2)]
    assert statuses == [200, 500]  # the property, then the fault for a document that is no envelope


def _reply_from(replies) -> int:  # type: ignore[no-untyped-def]
    status = int(replies.readline().split()[1])
    fields = iter(replies.readline, b"\r\n")
    length = next(int(field.split(b":")[1]) for field in fields if field.lower().startswith(b"content-length:"))
    for _ in fields:
        pass
    replies.read(length)
    return status


def test_conflicting_framing_gets_400_and_nothing_reaches_the_app(service):
    smuggled = http_post(property_request(service), b"Transfer-Encoding: chunked\r\n")
    with socket.create_connection(address(service), timeout=PROMPT) as connection:
        connection.sendall(smuggled)
        status, reply = reply_to(connection)
    assert status == 400 and "Content-Length" in fault_of(reply).description


def test_a_body_limit_beyond_the_xml_parsers_bound_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="max_body_kb must be between 1 and 4096"):
        make_config(tmp_path).with_overrides("service", max_body_kb=8192)


def test_a_soap12_envelope_gets_version_mismatch(gt4):
    soap12 = (
        f'<env:Envelope xmlns:env="{SOAP12_ENV}"><env:Body>'
        f'<wsrp:GetResourceProperty xmlns:wsrp="{WSRP}" xmlns:t="{TYPES}">t:MaximumRunningTime'
        "</wsrp:GetResourceProperty></env:Body></env:Envelope>"
    ).encode()
    status, reply = gt4.post(gt4.factory().address, soap12)
    fault = reply.find(qname(SOAP_ENV, "Body"))[0]  # answered in SOAP 1.1, as SOAP 1.2 appendix A says
    assert status == 500 and fault.findtext("faultcode") == "soapenv:VersionMismatch"


def test_beyond_max_connections_an_idle_connection_makes_room(tmp_path, clock):
    with serve(tmp_path / "state", clock, service={"max_connections": 4}) as service, ExitStack() as stack:
        idle = open_connections(stack, service, 4)
        prompt_call(service)
        assert closed(idle[0])  # the oldest idle one went


def test_the_test_client_sees_a_reset_and_sends_nothing_twice():
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def reset_after_one_request() -> None:
            connection, _ = listener.accept()
            received.append(connection.recv(65536))
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            connection.close()  # linger 0: a reset

        server = threading.Thread(target=reset_after_one_request)
        server.start()
        host, port = listener.getsockname()
        client = Gt4Client(f"http://{host}:{port}/wsrf/services/", timeout=PROMPT)
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            client.post(client.factory().address, b"<create/>")
        server.join()
        client.close()
    assert len(received) == 1
