"""The service's log over real operations: one line per state change and per libvirt action,
sent where [logging] says (stderr, a file, syslog), with no password or key material in it."""

import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clients import monitor
from tests.deployments import Gt4Remote, wait_options
from tests.gt4wire import SAMPLES, Gt4Client, created_eprs
from vws.cli.log_output import redact
from vws.config import ConfigError, LoggingConfig
from vws.errors import BackendError
from vws.xmlns import WORKSPACE, qname

SERVICE = Path(sys.executable).parent / "vws-service"
PASSWORD = "s3cret-pw"


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


def test_one_line_per_state_change_and_per_libvirt_action(service, gt4, caplog):
    caplog.set_level(logging.INFO, logger="vws.states")
    caplog.set_level(logging.INFO, logger="vws.libvirt")
    (epr,) = created_eprs(gt4.create())  # settled: Running
    key = epr.key(qname(WORKSPACE, "WorkspaceKey"))
    gt4.shutdown(epr)
    gt4.start(epr)
    gt4.destroy(epr)

    assert messages(caplog, "vws.states") == [
        f'workspace={key} from=new to=unpropagated reason="create: placed on node1"',
        f'workspace={key} from=unpropagated to=propagated reason="propagate"',
        f'workspace={key} from=propagated to=running reason="start"',
        f'workspace={key} from=running to=propagated reason="shutdown"',
        f'workspace={key} from=propagated to=running reason="start"',
        f'workspace={key} from=running to=cancelled reason="destroy"',
        f'workspace={key} from=cancelled to=destroyed reason="destroy"',
    ]
    domain = f"wrksp-{key}"
    actions = [record for record in caplog.records if record.name == "vws.libvirt"]
    assert [message.rpartition(" ms=")[0] for message in messages(caplog, "vws.libvirt")] == [
        f'node=node1 domain={domain} action="{action}" outcome=ok'
        for action in ("define", "start", "shut down", "start", "destroy", "undefine")
    ]
    assert {record.levelno for record in actions} == {logging.INFO}
    assert actions[1].libvirt_action["ms"] >= 0  # the fields, for a structured handler


def test_a_failed_libvirt_action_is_a_warning_naming_what_failed(service, gt4, caplog):
    caplog.set_level(logging.INFO, logger="vws.libvirt")
    (epr,) = created_eprs(gt4.create())
    key = epr.key(qname(WORKSPACE, "WorkspaceKey"))
    with pytest.raises(BackendError, match="resume"):
        service.pool.resume("node1", f"wrksp-{key}")  # it runs: libvirt refuses
    (failed,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert failed.getMessage().startswith(f'node=node1 domain=wrksp-{key} action="resume" outcome=failed ms=')
    assert f'error="node1: resume wrksp-{key} failed: ' in failed.getMessage()
    gt4.destroy(epr)
    assert 'action="destroy" outcome=ok' in messages(caplog, "vws.libvirt")[-2]


def write_config(tmp_path: Path, logging_section: str) -> Path:
    config = tmp_path / "vws.conf"
    config.write_text(f"[pool]\nallowed_image_hosts = 127.0.0.1\n\n[logging]\nlevel = INFO\n{logging_section}")
    return config


def metadata_with_image(tmp_path: Path, url: str) -> Path:
    metadata = tmp_path / "workspace.xml"
    metadata.write_text((SAMPLES / "workspace.xml").read_text().replace("file://ttylinux-xen", url))
    return metadata


def serve(tmp_path: Path, config: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [SERVICE, "--config", config, "--listen", "127.0.0.1:0", "--state-dir", tmp_path / "state", "--insecure"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("vws-service listening on http://"):
        process.kill()
        pytest.fail(f"vws-service did not start: {line!r}")
    return process, line.rsplit(" ", 1)[-1].strip()


def deploy_from_a_password_url(tmp_path: Path, base: str) -> str:
    """Create a workspace whose image URL holds a password and cannot be fetched; its key, once Corrupted."""
    metadata = metadata_with_image(tmp_path, f"http://alice:{PASSWORD}@127.0.0.1:9/disk.img")
    client = Gt4Client(base)
    try:
        (epr,) = created_eprs(client.create(metadata))
        outcome = monitor.wait_for([epr], "Corrupted", Gt4Remote(client), wait_options(timeout=60), base)
        assert outcome == 0
    finally:
        client.close()
    return epr.key(qname(WORKSPACE, "WorkspaceKey"))


def test_the_log_goes_to_the_configured_file_with_passwords_redacted(tmp_path):
    log_file = tmp_path / "vws.log"
    process, base = serve(tmp_path, write_config(tmp_path, f"destination = file\nfile = {log_file}\n"))
    try:
        key = deploy_from_a_password_url(tmp_path, base)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    text = log_file.read_text()
    assert "INFO vws.requests: WorkspaceFactoryService.create resource=- outcome=ok" in text
    assert f'INFO vws.states: workspace={key} from=new to=unpropagated reason="create: placed on node1"' in text
    corrupted = next(line for line in text.splitlines() if f"workspace={key} from=unpropagated to=corrupted" in line)
    assert "cannot download image http://alice:***@127.0.0.1:9/disk.img" in corrupted
    assert PASSWORD not in text


def test_the_log_goes_to_syslog_over_udp(tmp_path):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(30)
    port = receiver.getsockname()[1]
    syslog = f"destination = syslog\nsyslog_address = 127.0.0.1:{port}\nsyslog_facility = local3\n"
    config = write_config(tmp_path, syslog)
    process, base = serve(tmp_path, config)
    try:
        key = deploy_from_a_password_url(tmp_path, base)
        wanted = f"vws.states: workspace={key} from=unpropagated to=corrupted"
        received = []
        while not any(wanted in datagram for datagram in received):
            received.append(receiver.recv(65536).decode())
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        receiver.close()
    line = next(datagram for datagram in received if wanted in datagram)
    assert line.startswith(f"<{19 * 8 + 6}>vws[")  # local3.info, tagged as syslog expects
    assert PASSWORD not in "".join(received)


def test_redaction_takes_url_passwords_and_pem_blocks():
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    assert redact(f"fetch https://bob:hunter2@host/x.img failed; key {key} end") == (
        "fetch https://bob:***@host/x.img failed; key [PEM block redacted] end"
    )
    assert redact("qemu+ssh://root@node/system is fine") == "qemu+ssh://root@node/system is fine"


@pytest.mark.parametrize(
    ("settings", "wrong"),
    [
        ({"level": "LOUD"}, "level"),
        ({"destination": "journal"}, "destination"),
        ({"destination": "file"}, "file"),
        ({"syslog_address": "loghost"}, "syslog_address"),
        ({"syslog_facility": "kernel-ish"}, "syslog_facility"),
    ],
)
def test_a_logging_section_that_cannot_work_is_refused_naming_the_key(settings, wrong):
    with pytest.raises(ConfigError) as refused:
        LoggingConfig(**settings)
    assert refused.value.setting == ("logging", wrong)
