"""Shared fixtures: a real vws service on a free port, on the embedded default.

Every SOAP answer and every Notify a test receives (through tests.gt4wire, through zeep
or requests, or at a clients.listener consumer) is checked for QName values that do
not resolve in the message as sent.
"""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from lxml import etree

import clients.listener
from clients.workspace import main as vws_client
from tests import browser, gt4wire, qnames
from tests.deployments import settler
from tests.gt4wire import Gt4Client
from vws.clock import ManualClock
from vws.config import Config
from vws.service import Service
from vws.xmlns import SOAP_ENV, qname

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_config(state_dir: Path, **policy: object) -> Config:
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state_dir, insecure=True)
    return config.with_overrides("policy", **policy)


def _check_envelope(message: etree._Element) -> None:
    if message.tag == qname(SOAP_ENV, "Envelope"):
        qnames.assert_resolved(message)


@pytest.fixture(autouse=True, scope="session")
def qnames_resolve_in_every_message():
    """Every answer and Notify received, through any of the suite's clients, is checked as received."""
    gt4wire.REPLY_CHECKS.append(_check_envelope)
    send, parse = requests.Session.send, clients.listener.parse

    def checked_send(session, request, **options):  # type: ignore[no-untyped-def]
        response = send(session, request, **options)
        if not options.get("stream") and response.content.lstrip().startswith(b"<"):
            try:
                message = etree.fromstring(response.content)
            except etree.XMLSyntaxError:
                return response  # not XML (an HTML error page): nothing to check
            _check_envelope(message)
        return response

    def checked_parse(data: bytes) -> etree._Element:
        message = parse(data)
        _check_envelope(message)
        return message

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "send", checked_send)
        patch.setattr(clients.listener, "parse", checked_parse)
        yield
    gt4wire.REPLY_CHECKS.remove(_check_envelope)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def service(tmp_path, clock):
    running = Service(make_config(tmp_path / "state"), clock=clock)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def downloading_service(tmp_path, clock):
    """A service that may download images from this host, where tests serve them."""
    config = make_config(tmp_path / "state").with_overrides("pool", allowed_image_hosts=("127.0.0.1",))
    running = Service(config, clock=clock)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def gt4(service):
    client = Gt4Client(service.base_url, settle=settler(service))
    yield client
    client.close()


@pytest.fixture
def run(service, capsys):
    """vws-client, anonymous, against ``service``'s factory: its exit status and what it printed."""
    factory = service.base_url + "WorkspaceFactoryService"

    def run(*argv: object) -> tuple[int, str]:
        code = vws_client(["-s", factory, "--anonymous", *map(str, argv)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Where this session's browser screenshots are (tests/browser.py)."""
    for path in browser.WRITTEN:
        terminalreporter.write_line(f"screenshot: {path}")
