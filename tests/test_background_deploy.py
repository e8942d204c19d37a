"""Propagation in the background: create answers at once, progress shows, failures end Corrupted.

The image comes from a real HTTP server the test holds back: it sends the first MiB,
then waits for the test's word before sending the rest, so the deployment is caught
half-way without any sleep.
"""

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lxml import etree

from clients.workspace import main as vws_client
from tests.deployments import settler, wait_until
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from tests.resources import create, create_request
from tests.test_restart import SERVICE as SERVICE_COMMAND
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import DEFINITION, LOGISTICS, PROPAGATION, TYPES, WSA, qname

MIB = 1 << 20
IMAGE = bytes(range(256)) * (4 * MIB // 256)  # 4 MiB, no holes


class HeldImage:
    """Serves IMAGE; the first request stops after one MiB until ``release()``."""

    def __init__(self, status: int = 200) -> None:
        self.released = threading.Event()
        self.sent: list[int] = []  # bytes sent, per request
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if status != 200:
                    self.send_error(status)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(IMAGE)))
                self.end_headers()
                first = not held.sent
                held.sent.append(0)
                try:
                    for offset in range(0, len(IMAGE), MIB):
                        if first and offset == MIB:
                            held.released.wait(30)
                        self.wfile.write(IMAGE[offset : offset + MIB])
                        self.wfile.flush()
                        held.sent[-1] += MIB
                except OSError:  # the service hung up: the copy was abandoned
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/image.raw"

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> "HeldImage":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def image() -> Iterator[HeldImage]:
    with HeldImage() as held:
        yield held


@pytest.fixture
def service(downloading_service: Service) -> Service:
    return downloading_service


@pytest.fixture
def client(service) -> Iterator[Gt4Client]:
    """A client that does not wait for deployments: these tests watch them happen."""
    client = Gt4Client(service.base_url)
    yield client
    client.close()


def from_url(url: str) -> etree._Element:
    body = create_request()
    body.find(f".//{{{DEFINITION}}}location").text = url
    return body


def progress(client: Gt4Client, epr: EndpointReference) -> etree._Element | None:
    return client.get_property(epr, qname(PROPAGATION, "propagation")).find(qname(PROPAGATION, "propagation"))


def progress_shown(client: Gt4Client, epr: EndpointReference) -> etree._Element:
    """Read the property as a polling client would, until the first MiB is reported."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = progress(client, epr)
        if shown is not None:
            return shown
    raise AssertionError("no propagation progress was published")


def test_create_answers_unpropagated_shows_progress_then_runs(service, client, image, tmp_path, capsys):
    response = create(client, from_url(image.url))
    (epr,) = created_eprs(response)
    shown = progress_shown(client, epr)
    assert client.state(epr) == "Unpropagated"
    assert shown.get("node") == "node1"
    assert int(shown.get("bytesDone")) == MIB and int(shown.get("bytesTotal")) == len(IMAGE)
    saved = tmp_path / "ws.epr"
    saved.write_bytes(etree.tostring(epr.to_element(qname(WSA, "EndpointReference"))))
    assert vws_client(["-s", client.factory().address, "--anonymous", "status", "--eprFile", str(saved)]) == 0
    assert "image to node1: 25% of 4 MB" in capsys.readouterr().out

    image.release()
    settler(service)()
    assert client.state(epr) == "Running"
    assert progress(client, epr) is None
    assert image.sent == [len(IMAGE)]


class Logged(logging.Handler):
    """Sets ``seen`` when the manager logs a line containing ``words``."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.seen.set()


def test_destroy_during_propagation_abandons_the_copy_and_frees_everything(service, client, image, caplog):
    (epr,) = created_eprs(create(client, from_url(image.url)))
    ip = client.get_property(epr, qname(LOGISTICS, "logistics")).findtext(f".//{{{LOGISTICS}}}ipAddress")
    progress_shown(client, epr)
    abandoning = Logged("abandoning the copy")
    caplog.set_level(logging.INFO, logger="vws.workspace.deployers")
    logging.getLogger("vws.workspace.deployers").addHandler(abandoning)
    try:
        with ThreadPoolExecutor(1) as background:
            destroying = background.submit(Gt4Client(service.base_url).destroy, epr)
            assert abandoning.seen.wait(30)
            image.release()  # the next MiB's progress report is where the copy stops
            destroying.result(timeout=30)
    finally:
        logging.getLogger("vws.workspace.deployers").removeHandler(abandoning)
    with pytest.raises(SoapFault):
        client.state(epr)
    downloads = service.pool.repository.root / ".downloads"
    assert not downloads.exists() or not list(downloads.iterdir()), "the download ran to its end"
    (again,) = created_eprs(create(client, create_request()))  # the address is free again
    assert client.get_property(again, qname(LOGISTICS, "logistics")).findtext(f".//{{{LOGISTICS}}}ipAddress") == ip


def test_a_failed_deployment_is_corrupted_with_the_reason_and_holds_nothing(service, client):
    with HeldImage(status=404) as missing:
        response = create(client, from_url(missing.url))
        (epr,) = created_eprs(response)
        ip = response.findtext(f".//{{{LOGISTICS}}}ipAddress")  # the failure may already have freed it
        assert ip
        settler(service)()
    current = client.get_property(epr, qname(TYPES, "currentState"))
    assert current.findtext(f".//{{{TYPES}}}state") == "Corrupted"
    assert "404" in current.findtext(f".//{{{TYPES}}}WorkspaceFault//{{*}}Description")
    assert client.get_property(epr, qname(LOGISTICS, "logistics")).find(f".//{{{LOGISTICS}}}nic") is None
    (again,) = created_eprs(create(client, create_request()))
    assert client.get_property(again, qname(LOGISTICS, "logistics")).findtext(f".//{{{LOGISTICS}}}ipAddress") == ip
    client.destroy(epr)
    with pytest.raises(SoapFault):
        client.state(epr)


def test_a_group_runs_together_or_not_at_all(service, client):
    with HeldImage(status=404) as missing:
        body = from_url(missing.url)
        body.find(".//{*}NodeNumber").text = "3"
        members = created_eprs(create(client, body))
        settler(service)()
    states = [client.get_property(epr, qname(TYPES, "currentState")) for epr in members]
    assert [state.findtext(f".//{{{TYPES}}}state") for state in states] == ["Corrupted"] * 3
    reasons = [state.findtext(f".//{{{TYPES}}}WorkspaceFault//{{*}}Description") for state in states]
    assert "404" in reasons[0] and all("of the same request failed" in reason for reason in reasons[1:])


def test_a_restart_during_propagation_finishes_the_deployment(tmp_path, image):
    state_dir = tmp_path / "state"
    (tmp_path / "vws.conf").write_text("[pool]\nallowed_image_hosts = 127.0.0.1\n")

    def start() -> tuple[subprocess.Popen, Gt4Client]:
        process = subprocess.Popen(
            [SERVICE_COMMAND, "--config", tmp_path / "vws.conf", "--listen", "127.0.0.1:0"]
            + ["--state-dir", state_dir, "--insecure"],
            stdout=subprocess.PIPE,
            text=True,
        )
        return process, Gt4Client(process.stdout.readline().rsplit(" ", 1)[-1].strip())

    process, client = start()
    try:
        (epr,) = created_eprs(create(client, from_url(image.url)))
        progress_shown(client, epr)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    image.release()

    process, client = start()
    try:
        wait_until(client, [epr])
        assert image.sent[1] == len(IMAGE)  # fetched again from the start, and completely
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_an_image_missing_from_the_repository_is_refused_by_create_itself(service, client):
    with pytest.raises(SoapFault) as refused:
        create(client, from_url("file://no-such-image"))
    assert refused.value.element == qname(TYPES, "WorkspaceMetadataFault")
    assert "not found" in refused.value.description
    assert service.manager.workspaces(SERVICE) == []
