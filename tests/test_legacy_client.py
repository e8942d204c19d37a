"""The ``workspace`` command: GT4 client scripts, flags as Nimbus's own samples use them, against a real service.

Each call runs the installed console script (``python -m clients.legacy`` before the
package is reinstalled) as its own process; ``-a`` (anonymous) is the GT4 flag for an
unsigned exchange with the test's --insecure service.
"""

import http.client
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import make_config
from tests.test_background_deploy import HeldImage
from tests.test_client_waiting import metadata_from
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.xmlns import NEGOTIABLE, TYPES, WORKSPACE, qname

SCRIPT = Path(sys.executable).with_name("workspace")
LEGACY = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "clients.legacy"]
SAMPLE = Path(__file__).resolve().parents[1] / "etc" / "samples" / "workspace.xml"


class Recorder:
    """An HTTP hop in front of the service that keeps each request body: what went out on the wire."""

    def __init__(self, service_port: int) -> None:
        self.bodies: list[etree._Element] = []
        recorder = self

        class Hop(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._forward(None)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.bodies.append(etree.fromstring(body))
                self._forward(body)

            def _forward(self, body: bytes | None) -> None:
                upstream = http.client.HTTPConnection("127.0.0.1", service_port, timeout=30)
                upstream.request(self.command, self.path, body, {k: v for k, v in self.headers.items()})
                reply = upstream.getresponse()
                content = reply.read()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.getheader("Content-Type", "text/xml"))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
                upstream.close()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Hop)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/wsrf/services/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def bodies_of(self, tag: str) -> list[etree._Element]:
        return [body for envelope in self.bodies for body in envelope.iter(tag)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def recorder(tmp_path, clock) -> Iterator[tuple[Service, Recorder]]:
    """A service whose every address (EPRs, WSDL) names a Recorder in front of it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hop = Recorder(port)
    config = make_config(tmp_path / "state").with_overrides("service", listen=f"127.0.0.1:{port}", base_url=hop.url)
    service = Service(config, clock=clock)
    service.start()
    yield service, hop
    service.stop()
    hop.close()


@pytest.fixture
def service(downloading_service: Service) -> Service:
    return downloading_service


def factory(service: Service) -> str:
    return service.base_url + "WorkspaceFactoryService"


def workspace(*argv: object, cwd: Path) -> tuple[int, str]:
    done = subprocess.run([*LEGACY, *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=120)
    return done.returncode, done.stdout + done.stderr


def deploy(service: Service, cwd: Path, *flags: object) -> str:
    """The GT4 sample's deploy line (client-sample-01.sh), polling fast, waiting for Running."""
    code, out = workspace(
        "--deploy", "--file", "workspace.epr", "--metadata", SAMPLE, "-s", factory(service), "-a",
        "--poll-delay", 50, "--deploy-duration", 30, "--deploy-mem", 256, "--deploy-state", "Running",
        "--exit-state", "Running", *flags, cwd=cwd,
    )  # fmt: skip
    assert code == 0, out
    return out


def state(epr: str, cwd: Path) -> str:
    code, out = workspace("--rpquery", "-a", "-e", epr, cwd=cwd)
    assert code == 0, out
    return etree.fromstring(out.encode()).findtext(f".//{{{TYPES}}}state")


def test_the_sample_deploy_line_watches_until_the_workspace_is_gone(service, tmp_path):
    """client-sample-01.sh unchanged but for -a: no --exit-state, so the client stays until the end."""
    command = [*LEGACY, "--deploy", "--file", "workspace.epr", "--metadata", str(SAMPLE), "-s", factory(service)]
    command += ["--poll-delay", "50", "--deploy-duration", "30", "--deploy-mem", "256", "--deploy-state", "Running"]
    watching = subprocess.Popen([*command, "-a"], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    while "workspace 1: Running" not in (line := watching.stdout.readline()):
        assert line, "the client ended before the workspace ran"
    assert workspace("--e", "workspace.epr", "--destroy", "-a", cwd=tmp_path) == (0, "destroyed\n")
    assert watching.wait(timeout=60) == 0
    assert watching.stdout.read().splitlines()[-1] == "workspace 1: Destroyed"


def test_every_action_with_the_gt4_flags(service, tmp_path):
    assert "workspace 1: Running" in deploy(service, tmp_path)
    for action, expected in (("--pause", "Paused"), ("--start", "Running"), ("--reboot", "Running")):
        assert workspace("--e", "workspace.epr", action, "-a", cwd=tmp_path) == (0, f"state: {expected}\n")
    assert state("workspace.epr", tmp_path) == "Running"
    code, out = workspace("--subscribe", "-e", "workspace.epr", "--exit-state", "running", "-a", cwd=tmp_path)
    assert code == 0 and out.startswith("workspace 1: Running\n"), out
    assert workspace("--shutdown", "--e", "workspace.epr", "-a", cwd=tmp_path) == (0, "state: Propagated\n")
    code, out = workspace("--factoryrp", "-s", factory(service), "-a", cwd=tmp_path)
    assert code == 0 and "Associations: public" in out
    assert workspace("--destroy", "-e", "workspace.epr", "-a", cwd=tmp_path) == (0, "destroyed\n")


def test_a_group_as_the_group_sample_makes_it(service, tmp_path):
    out = deploy(service, tmp_path, "--numnodes", 2, "--groupfile", "workspace-group.epr", "--file", "workspace")
    assert "group EPR written to workspace-group.epr" in out
    assert sorted(path.name for path in tmp_path.glob("workspace-0*.epr")) == ["workspace-001.epr", "workspace-002.epr"]
    code, out = workspace("--shutdown", "-e", "workspace-group.epr", "-a", cwd=tmp_path)
    assert code == 0, out
    assert [state(f"workspace-00{n}.epr", tmp_path) for n in (1, 2)] == ["Propagated", "Propagated"]
    assert workspace("--destroy", "-e", "workspace-group.epr", "-a", cwd=tmp_path)[0] == 0
    assert workspace("--rpquery", "-a", "-e", "workspace-001.epr", cwd=tmp_path)[0] == 2


def test_an_ensemble_as_the_ensemble_sample_makes_it_with_trash_at_shutdown(service, tmp_path):
    common = ["--metadata", SAMPLE, "-s", factory(service), "-a", "--deploy-duration", 30, "--deploy-mem", 256]
    common += ["--trash-at-shutdown", "--poll-delay", 50]
    first = ["--file", "group1", "--numnodes", 2, "--groupfile", "group1.epr"]
    code, out = workspace("--deploy", *common, *first, "--new-ensemble", "whole.epr", cwd=tmp_path)
    assert code == 0 and "ensemble EPR written to whole.epr" in out, out
    second = ["--file", "group2", "--join-ensemble", "whole.epr", "--last-in-ensemble", "--exit-state", "Running"]
    code, out = workspace("--deploy", *common, *second, cwd=tmp_path)
    assert code == 0, out
    members = service.manager.workspaces(SERVICE)
    assert [(one.state.wire, one.request.trash_at_shutdown) for one in members] == [("Running", True)] * 3
    code, out = workspace("--deploy", *common, *first, "--new-ensemble", "whole.epr", cwd=tmp_path)
    assert (code, out) == (1, "workspace: --new-ensemble: whole.epr exists already\n")


def test_shutdown_save_sends_the_save_target_then_destroys_the_saved_workspace(recorder, tmp_path):
    service, wire = recorder
    deploy(service, tmp_path, "--save-target", "file://at-create.qcow2")
    (created,) = service.manager.workspaces(SERVICE)
    assert created.request.save_target == "file://at-create.qcow2"
    code, out = workspace("--shutdown-save", "-e", "workspace.epr", "--save-target", "file://saved.qcow2", "-a",
                          "--poll-delay", 50, cwd=tmp_path)  # fmt: skip
    assert code == 0, out
    assert out.splitlines()[-2:] == ["workspace 1: TransportReady", "disk saved; workspace destroyed (--auto-destroy)"]
    (shutdown,) = wire.bodies_of(qname(WORKSPACE, "shutdownWorkspace"))
    assert shutdown.findtext(qname(TYPES, "shutdownType")) == "ReadyForTransport"
    target = f"{{{NEGOTIABLE}}}PostShutdown/{{{NEGOTIABLE}}}rootPartitionUnpropagationTarget"
    assert shutdown.findtext(target) == "file://saved.qcow2"
    assert service.manager.workspaces(SERVICE) == []


def test_no_auto_destroy_leaves_the_saved_workspace(service, tmp_path):
    deploy(service, tmp_path)
    code, out = workspace("--shutdown-save", "-e", "workspace.epr", "--no-auto-destroy", "-a", cwd=tmp_path)
    assert (code, out.splitlines()[-1]) == (0, "workspace 1: TransportReady")
    assert state("workspace.epr", tmp_path) == "TransportReady"


def test_a_corrupted_workspace_is_destroyed_and_the_exit_state_missed(service, tmp_path):
    with HeldImage(status=404) as missing:
        metadata = metadata_from(missing.url, tmp_path)
        code, out = workspace(
            "--deploy", "--file", "workspace.epr", "--metadata", metadata, "-s", factory(service), "-a",
            "--deploy-duration", 30, "--deploy-mem", 256, "--exit-state", "Running", cwd=tmp_path,
        )  # fmt: skip
    assert code == 2
    lines = out.splitlines()
    assert lines[-3].startswith("workspace 1: Corrupted: ") and "404" in lines[-3]
    assert lines[-2:] == ["workspace 1: destroying it (--auto-destroy)", "workspace 1: Destroyed"]
    assert service.manager.workspaces(SERVICE) == []


def test_nosubscriptions_returns_once_the_workspace_is_created(service, tmp_path):
    code, out = workspace(
        "--deploy", "--file", "workspace.epr", "--metadata", SAMPLE, "-s", factory(service), "-a",
        "--deploy-duration", 30, "--deploy-mem", 256, "--nosubscriptions", cwd=tmp_path,
    )  # fmt: skip
    assert (code, out) == (0, "workspace 1: EPR written to workspace.epr\n")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "one of the arguments --deploy --destroy"),
        (["--deploy", "--pause"], "not allowed with argument"),
        (["--deploy", "-s", "http://h/wsrf/services/WorkspaceFactoryService"], "--deploy requires a metadata file"),
        (["--deploy", "--metadata", SAMPLE, "--deploy-mem", 256], "needs both --deploy-duration and --deploy-mem"),
        (["--deploy", "--metadata", SAMPLE, "--deploy-state", "Sleeping"], "is not a workspace state"),
        (["--deploy", "--metadata", SAMPLE, "--deploy-mem", 0], "not a whole number of at least 1"),
        (["--deploy", "--metadata", SAMPLE, "-r", SAMPLE, "--last-in-ensemble"], "needs --join-ensemble"),
        (["--pause"], "--pause requires an EPR file (-e)"),
        (["--shutdown-save", "-e", "x.epr", "--exit-state", "Running"], "can only be TransportReady"),
        (["--destroy", "-e", "missing.epr"], "cannot read an EPR from missing.epr"),
        (["--destroy", "-e", "x.epr", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_command_line_the_gt4_client_refuses_is_one_line_and_exit_1(tmp_path, argv, message):
    (tmp_path / "x.epr").write_text("<not-an-epr/>")
    code, out = workspace(*argv, cwd=tmp_path)
    assert code == 1
    (line,) = out.strip().splitlines()
    assert line.startswith("workspace: ") and message in line


def test_a_refusal_by_the_service_exits_2(service, tmp_path):
    deploy(service, tmp_path)
    code, out = workspace("--start", "-e", "workspace.epr", "-a", cwd=tmp_path)
    assert code == 2 and out.startswith("workspace: start failed:")
