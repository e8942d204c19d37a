"""vws-client waiting for states, as its own process against a real service: what a user watches.

The client runs as a subprocess (its output read line by line as it comes, or through
a pseudo-terminal), so the test can act while it waits: advance the service's clock,
press Ctrl-C, let a held image copy go on.
"""

import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from clients.monitor import WORKSPACE_KEY
from clients.workspace import main as vws_client
from clients.workspace import read_epr
from tests.test_background_deploy import HeldImage
from vws.service import Service
from vws.soap.porttypes.producer import producer_key
from vws.xmlns import DEFINITION

CLIENT = [sys.executable, "-m", "clients.workspace", "--anonymous"]
SAMPLE = Path(__file__).resolve().parents[1] / "etc" / "samples" / "workspace.xml"


@pytest.fixture
def service(downloading_service: Service) -> Service:
    return downloading_service


@pytest.fixture
def image() -> Iterator[HeldImage]:
    with HeldImage() as held:
        yield held


def factory(service: Service) -> str:
    return service.base_url + "WorkspaceFactoryService"


def metadata_from(url: str, directory: Path) -> Path:
    """The sample metadata with its image at ``url``."""
    document = etree.parse(str(SAMPLE))
    document.find(f".//{{{DEFINITION}}}location").text = url
    path = directory / "metadata.xml"
    document.write(str(path))
    return path


def deployed(service: Service, directory: Path, *options: object) -> Path:
    epr = directory / "ws.epr"
    argv = ["-s", factory(service), "--anonymous", "deploy", "--file", epr, "--poll", "--poll-delay", 10, *options]
    assert vws_client(list(map(str, argv))) == 0
    return epr


def subscriptions_of(service: Service, epr: Path) -> list:
    return service.subscriptions.active(producer_key(int(read_epr(epr).key(WORKSPACE_KEY))), None)


class Client:
    """vws-client in its own process, its output read a line at a time."""

    def __init__(self, *argv: object) -> None:
        command = [*CLIENT, *map(str, argv)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def line(self) -> str:
        return self.process.stdout.readline().rstrip("\n")

    def until(self, words: str) -> str:
        """The first line containing ``words`` (the client's output up to it is read and dropped)."""
        while (line := self.process.stdout.readline()) and words not in line:
            pass
        return line.rstrip("\n")

    def finish(self) -> tuple[int, list[str]]:
        """The exit status, and the lines not read yet."""
        rest = self.process.stdout.read().splitlines()
        return self.process.wait(timeout=30), rest


@pytest.mark.parametrize("poll", [False, True], ids=["notifications", "polling"])
def test_subscribe_until_destroyed_sees_a_lease_run_out(service, clock, tmp_path, poll):
    epr = deployed(service, tmp_path, "--deploy-duration", 5)
    waiting = Client("subscribe", "--eprFile", epr, "--exit-state", "destroyed", *(["--poll"] if poll else []))
    assert waiting.line() == "workspace 1: Running"  # subscribed (or polling), and the state read
    clock.advance(timedelta(minutes=6))
    code, rest = waiting.finish()
    assert code == 0, rest
    assert rest[-1] == "workspace 1: Destroyed"


def test_ctrl_c_ends_the_wait_and_the_subscriptions_it_made(service, tmp_path):
    epr = deployed(service, tmp_path)
    waiting = Client("subscribe", "--eprFile", epr, "--exit-state", "Paused")
    assert waiting.line() == "workspace 1: Running"
    assert len(subscriptions_of(service, epr)) == 2
    waiting.process.send_signal(signal.SIGINT)
    assert waiting.finish() == (130, ["vws-client: interrupted"])
    assert subscriptions_of(service, epr) == []


def test_a_deployment_that_ends_corrupted_is_reported_with_its_reason(service, tmp_path, capsys):
    with HeldImage(status=404) as missing:
        metadata = metadata_from(missing.url, tmp_path)
        argv = ["-s", factory(service), "--anonymous", "deploy", "--metadata", metadata, "--file", tmp_path / "ws.epr"]
        assert vws_client(list(map(str, argv))) == 3
    corrupted = capsys.readouterr().out.strip().splitlines()[-1]
    assert corrupted.startswith("workspace 1: Corrupted: ") and "404" in corrupted


def test_deploy_shows_how_far_the_image_copy_is_in_plain_lines(service, image, tmp_path):
    metadata = metadata_from(image.url, tmp_path)
    deploying = Client("-s", factory(service), "deploy", "--metadata", metadata, "--file", tmp_path / "ws.epr")
    assert deploying.until("image to") == "workspace 1: image to node1: 25% of 4 MB"
    image.release()
    code, rest = deploying.finish()
    assert code == 0 and "workspace 1: Running" in rest, rest
    assert all("\r" not in line for line in rest)


def test_deploy_draws_a_progress_bar_on_a_terminal(service, image, tmp_path):
    metadata = metadata_from(image.url, tmp_path)
    terminal, side = pty.openpty()
    argv = [*CLIENT, "-s", factory(service), "deploy", "--metadata", metadata, "--file", tmp_path / "ws.epr"]
    process = subprocess.Popen([str(part) for part in argv], stdout=side, stderr=side, stdin=subprocess.DEVNULL)
    os.close(side)
    shown = read_until(terminal, b"25% of 4 MB")
    assert b"\r" + b"workspace 1: [######" + b"." * 18 + b"] image to node1: 25% of 4 MB" in shown
    image.release()
    shown += read_until(terminal, None)
    os.close(terminal)
    assert process.wait(timeout=30) == 0
    # The bar's line is ended before the next state is told.
    assert re.search(rb"\] image to node1: \d+% of 4 MB\x1b\[K\r\nworkspace 1: (Propagated|Running)\r\n", shown)


def read_until(terminal: int, words: bytes | None) -> bytes:
    """What the terminal shows up to ``words`` (None: until the client closes it)."""
    shown = b""
    while words is None or words not in shown:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the other side is closed
            chunk = b""
        if not chunk:
            assert words is None, shown
            return shown
        shown += chunk
    return shown
