"""The command-line edges: what vws-service and vws-proxy-init say when asked for something unwise,
and where vws-service runs its threads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gt4wire import Gt4Client
from tests.processes import children, signing_helpers
from vws.cli.admin import main as admin
from vws.clock import SystemClock
from vws.config import ConfigError, ServiceConfig
from vws.security.ca import DevCA
from vws.security.proxy import create_proxy
from vws.security.trust import TrustStore
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "listen, beyond",
    [
        ("127.0.0.1:8443", False),
        ("127.0.0.2:0", False),
        ("localhost:0", False),
        ("[::1]:8443", False),
        ("0.0.0.0:8443", True),
        (":8443", True),
        ("[::]:8443", True),
        ("192.0.2.7:8443", True),
    ],
)
def test_what_reaches_past_loopback(listen, beyond):
    assert ServiceConfig(listen=listen).listens_beyond_loopback() is beyond


def serve_briefly(tmp_path: Path, listen: str) -> str:
    """What vws-service --insecure says on stderr from start until it listens."""
    argv = [BIN / "vws-service", "--listen", listen, "--state-dir", tmp_path / "state", "--insecure"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("vws-service listening on http://")
    finally:
        process.terminate()
    return process.communicate(timeout=60)[1]


def test_insecure_beyond_loopback_is_warned_about(tmp_path):
    warning = serve_briefly(tmp_path, "0.0.0.0:0")
    assert warning == (
        "vws-service: warning: insecure accepts anonymous, unsigned requests from anyone who reaches 0.0.0.0:0: "
        "listen on 127.0.0.1 unless this network is yours alone\n"
    )


def test_insecure_on_loopback_is_not(tmp_path):
    assert serve_briefly(tmp_path, "127.0.0.1:0") == ""


def test_vws_proxy_init_refuses_a_short_key_in_one_line(tmp_path):
    argv = [BIN / "vws-proxy-init", "-bits", "512", "-out", tmp_path / "x509up"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "vws-proxy-init: -bits 512: keys shorter than 2048 bits are refused\n"
    assert not (tmp_path / "x509up").exists()


def start_with_cpu(tmp_path: Path, cpu: str, insecure: bool = True) -> subprocess.Popen:
    config = tmp_path / "vws.conf"
    config.write_text(
        f"[service]\nlisten = 127.0.0.1:0\nstate_dir = {tmp_path / 'state'}\ninsecure = {'yes' if insecure else 'no'}\n"
        f"cpu = {cpu}\n"
    )
    argv = [BIN / "vws-service", "--config", config]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def thread_cpus(pid: int) -> dict[int, set[int]]:
    return {int(task.name): os.sched_getaffinity(int(task.name)) for task in Path(f"/proc/{pid}/task").iterdir()}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: there is nothing to pin to")
def test_vws_service_runs_its_threads_on_one_cpu_and_the_programs_it_starts_on_all(tmp_path):
    allowed = os.sched_getaffinity(0)
    service = start_with_cpu(tmp_path, "auto")
    try:
        url = service.stdout.readline().split()[-1]
        client = Gt4Client(url)
        client.query(client.factory(), "count(/*)")  # an XPath query: the service starts a worker process
        assert set(map(frozenset, thread_cpus(service.pid).values())) == {frozenset({max(allowed)})}
        (worker,) = children(service.pid)
        assert os.sched_getaffinity(worker) == allowed
        client.close()
    finally:
        service.terminate()
        service.communicate(timeout=60)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: there is nothing to pin to")
def test_a_signed_service_signs_its_replies_in_helpers_on_the_other_cpus(tmp_path):
    allowed, state = os.sched_getaffinity(0), tmp_path / "state"
    assert admin(["--state-dir", str(state), "ca", "init", "--hostname", "localhost"]) == 0
    clock, trust = SystemClock(), TrustStore(DevCA(state / "security").trust_dir)
    service = start_with_cpu(tmp_path, "auto", insecure=False)
    try:
        signer = MessageSigner(create_proxy(DevCA(state / "security").user(), clock), clock)
        client = Gt4Client(service.stdout.readline().split()[-1], sign=signer.sign)
        client.query(client.factory(), "count(/*)")
        assert MessageVerifier(trust, clock).verify(client.last_reply).identity.endswith("/CN=host/localhost")
        helpers = signing_helpers(service.pid)
        assert len(helpers) == 4
        assert {frozenset(os.sched_getaffinity(pid)) for pid in helpers} == {frozenset(allowed - {max(allowed)})}
        client.close()
    finally:
        service.terminate()
        service.communicate(timeout=60)
    assert not any(Path(f"/proc/{pid}").exists() for pid in helpers)


def test_a_cpu_the_service_may_not_use_is_refused_by_name(tmp_path):
    service = start_with_cpu(tmp_path, "4096")
    _, errors = service.communicate(timeout=60)
    assert service.returncode == 2
    assert "[service] cpu = 4096: this process may run only on CPUs [" in errors
    with pytest.raises(ConfigError, match="cpu must be auto, all or a CPU's number, not 'fast'"):
        ServiceConfig(cpu="fast")
