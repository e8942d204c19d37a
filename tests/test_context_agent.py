"""The real context agent (vws/context/agent.sh) against a running broker, on this host.

Each member's agent runs from the very config-drive layout the pool wrote for its
workspace (``test_node_context_iso`` makes the test driver write it), with its hosts
file, scratch space and role scripts in a temporary directory instead of the guest's.
It runs under busybox alone (sh, wget, sed, base64 ... and nothing else on PATH), as in
a minimal guest, and under the host's sh with curl.
"""

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import contexts
from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client, created_eprs
from vws.cli.admin import main as admin
from vws.clock import ManualClock, SystemClock
from vws.config import Config
from vws.context.bootstrap import agent_script
from vws.security import tls
from vws.security.ca import DevCA
from vws.security.proxy import create_proxy
from vws.service import Service
from vws.soap.porttypes.common import WORKSPACE_KEY
from vws.workspace.caller import SERVICE

BUSYBOX = "/bin/busybox"
# What the agent and the role scripts below use, as busybox applets.
APPLETS = "sh wget sed awk base64 cat mkdir head cut sort tr wc touch date sleep echo printf rm cp".split()
SCRIPTS = {
    "0-etchosts": 'echo "$1 $2 $3" >>"$OUT/etchosts"\n',
    "1-ipandhost/head": 'echo "$1 $2 $3" >"$OUT/head"\n',
    "2-thishost/eth0": 'echo "$1 $2 $3" >"$OUT/thishost"\n',
    "3-data/jobs": 'cp "$1" "$OUT/jobs"\n',
    "4-restarts/head": 'echo restarted >"$OUT/restarts"\n',
    "5-thishost-finalize/eth0": 'echo "$1" >"$OUT/finalized"\n',
}


@pytest.fixture
def service(tmp_path, clock):
    config = make_config(tmp_path / "state").with_overrides("pool", test_node_context_iso=True)
    running = Service(config, clock=clock)
    running.start()
    yield running
    running.stop()


@dataclass
class Guest:
    """One member's agent as it would run in its guest: its drive, and the files it changes."""

    drive: Path
    root: Path

    @property
    def out(self) -> Path:
        return self.root / "out"

    def environment(self, busybox: Path | None) -> dict[str, str]:
        return {
            "PATH": str(busybox) if busybox else os.environ["PATH"],
            "OUT": str(self.out),
            "VWS_CTX_DRIVE": str(self.drive),
            "VWS_CTX_SCRIPTS": str(self.root / "ctx-scripts"),
            "VWS_CTX_HOSTS": str(self.root / "hosts"),
            "VWS_CTX_WORK": str(self.root / "work"),
            "VWS_CTX_PUBKEY": str(self.root / "ssh_host_rsa_key.pub"),
            "VWS_CTX_MAX_WAIT": "1",
            # The service runs on a manual clock in the past: the deadline is the host's.
            "VWS_CTX_DEADLINE": str(int(time.time()) + 60),
        }

    def start(self, busybox: Path | None, **settings: str) -> subprocess.Popen:
        shell = [BUSYBOX, "sh"] if busybox else ["sh"]
        return subprocess.Popen(
            [*shell, str(self.drive / "vws/context/agent.sh")],
            env=self.environment(busybox) | settings,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def guest(service: Service, workspace_id: int, root: Path) -> Guest:
    with service.store.reading() as db:
        (directory,) = db.execute(
            "select directory from pool_domains where workspace_id = ?", [workspace_id]
        ).fetchone()
    for relative, text in SCRIPTS.items():
        (root / "ctx-scripts" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "ctx-scripts" / relative).write_text(text)
    (root / "out").mkdir()
    (root / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "ssh_host_rsa_key.pub").write_text(f"ssh-ed25519 AAAAC3Nz{workspace_id} root@member\n")
    return Guest(Path(directory) / "context", root)


@pytest.fixture(params=["busybox", "sh+curl"])
def busybox(request, tmp_path) -> Path | None:
    """A PATH of busybox applets only, or None for the host's own (where curl is)."""
    if request.param == "sh+curl":
        return None
    applets = tmp_path / "busybox-bin"
    applets.mkdir()
    for name in APPLETS:
        (applets / name).symlink_to(BUSYBOX)
    return applets


@dataclass(frozen=True)
class Cluster:
    context: contexts.Created
    head: Guest
    worker: Guest
    worker_id: int
    addresses: list[tuple[str, str]]  # (IP, hostname) of the head, then the worker


def cluster(gt4: Gt4Client, service: Service, tmp_path: Path) -> Cluster:
    """A head node (provides 'head', requires every identity) and a worker (requires only 'head' and data 'jobs')."""
    context = contexts.create_context(gt4, expect_injections=True)
    head = contexts.join(gt4, context.epr, provides=("head",))
    worker = contexts.join(
        gt4, context.epr, requires_roles=("head",), requires_data=("jobs",), all_identities=False, lock=True
    )
    contexts.inject(gt4, context.epr, jobs="queue=batch\nslots=4\n")
    contexts.no_more_injections(gt4, context.epr)
    head_id, worker_id = (int(created_eprs(created)[0].key(WORKSPACE_KEY)) for created in (head, worker))
    return Cluster(
        context,
        guest(service, head_id, tmp_path / "head"),
        guest(service, worker_id, tmp_path / "worker"),
        worker_id,
        contexts.addresses(head) + contexts.addresses(worker),
    )


def finish(agent: subprocess.Popen) -> tuple[int, str]:
    output, _ = agent.communicate(timeout=60)
    return agent.returncode, output


def test_the_drive_carries_the_bootstrap_and_the_agent(gt4, service, tmp_path):
    made = cluster(gt4, service, tmp_path)
    context, head = made.context, made.head
    bootstrap = (head.drive / "vws/context/bootstrap").read_text()
    assert f"VWS_CTX_KEY={context.key}\n" in bootstrap
    assert f"VWS_CTX_SECRET={context.secret}\n" in bootstrap
    assert f"VWS_CTX_URL={context.broker_url}\n" in bootstrap
    assert (head.drive / "vws/context/agent.sh").read_text() == agent_script()


def test_two_agents_contextualize_a_head_and_a_worker(gt4, service, tmp_path, busybox):
    made = cluster(gt4, service, tmp_path)
    context, head, worker = made.context, made.head, made.worker
    (head_ip, head_name), (worker_ip, worker_name) = made.addresses
    agents = [member.start(busybox) for member in (head, worker)]
    for member, agent in zip((head, worker), agents, strict=True):
        code, output = finish(agent)
        assert code == 0, output
        assert "VWS-CTX-AGENT ok" in output
        hosts = (member.root / "hosts").read_text()
        assert "127.0.0.1 localhost\n" in hosts
        assert f"{head_ip} {head_name} {head_name.split('.')[0]}\n" in hosts
    # The head required every identity; the worker the head's, its role and its data.
    assert f"{worker_ip} {worker_name}" in (head.root / "hosts").read_text()
    assert worker_ip not in (worker.root / "hosts").read_text()
    assert (worker.out / "head").read_text() == f"{head_ip} {head_name.split('.')[0]} {head_name}\n"
    assert (worker.out / "jobs").read_text() == "queue=batch\nslots=4\n"
    assert (worker.root / "work/data/jobs").read_text() == "queue=batch\nslots=4\n"
    assert (worker.out / "restarts").read_text() == "restarted\n"
    assert (worker.out / "finalized").read_text() == f"{worker_ip}\n"
    assert sorted((head.out / "etchosts").read_text().splitlines()) == sorted(
        f"{ip} {name.split('.')[0]} {name}" for ip, name in ((head_ip, head_name), (worker_ip, worker_name))
    )
    assert not (head.out / "head").exists() and not (head.out / "jobs").exists()
    rp = contexts.status(gt4, context.epr)
    assert (rp["complete"], rp["allOK"], rp["numNodesRegistered"]) == ("true", "true", "2")


def test_agents_reach_a_tls_service_on_its_agents_listener(tmp_path, busybox):
    state = tmp_path / "state"
    assert admin(["--state-dir", str(state), "ca", "init", "--hostname", "localhost"]) == 0
    config = Config().with_overrides("service", listen="127.0.0.1:0", agent_listen="127.0.0.1:0", state_dir=state)
    config = config.with_overrides("security", tls=True, require_signature=False)
    # Now, not the suite's clock in the past: the proxy made below starts now.
    service = Service(config.with_overrides("pool", test_node_context_iso=True), clock=ManualClock(SystemClock().now()))
    service.start()
    dev = DevCA(state / "security")
    proxy = create_proxy(dev.user(), SystemClock()).write(tmp_path / "proxy.pem")
    gt4 = Gt4Client(service.base_url, settle=settler(service), tls=tls.client_context(proxy, dev.trust_dir))
    try:
        assert service.base_url.startswith("https://")
        made = cluster(gt4, service, tmp_path)
        assert made.context.broker_url == service.agent_url
        for agent in [member.start(busybox) for member in (made.head, made.worker)]:
            code, output = finish(agent)
            assert code == 0 and "VWS-CTX-AGENT ok" in output, output
        assert contexts.status(gt4, made.context.epr)["allOK"] == "true"
    finally:
        gt4.close()
        service.stop()


def test_an_agent_stops_with_an_error_when_a_member_fails(gt4, service, tmp_path, busybox):
    made = cluster(gt4, service, tmp_path)
    agent = made.head.start(busybox)
    # The worker never boots: its workspace is destroyed while the head waits for it.
    service.manager.destroy(SERVICE, made.worker_id)
    code, output = finish(agent)
    assert code == 4, output
    assert "VWS-CTX-AGENT error 4 retrieve: context cancelled: member" in output
    rp = contexts.status(gt4, made.context.epr)
    assert (rp["errorPresent"], rp["allOK"]) == ("true", "false")


def test_an_agent_with_another_contexts_secret_is_refused(gt4, service, tmp_path, busybox):
    head = cluster(gt4, service, tmp_path).head
    other = contexts.create_context(gt4)
    forged = tmp_path / "forged"
    (forged / "vws/context").mkdir(parents=True)
    (forged / "vws/network").write_text((head.drive / "vws/network").read_text())
    (forged / "vws/context/agent.sh").write_text(agent_script())
    bootstrap = (head.drive / "vws/context/bootstrap").read_text()
    secret = next(line for line in bootstrap.splitlines() if line.startswith("VWS_CTX_SECRET="))
    (forged / "vws/context/bootstrap").write_text(bootstrap.replace(secret, f"VWS_CTX_SECRET={other.secret}"))
    code, output = finish(Guest(forged, head.root).start(busybox))
    assert code == 2, output
    assert "refused this context's secret" in output


def test_an_agent_gives_up_with_an_error_when_the_context_never_completes(gt4, service, tmp_path, busybox):
    """A context nobody locks never completes: the agent stops at its deadline and reports the error."""
    context = contexts.create_context(gt4)
    created = contexts.join(gt4, context.epr)  # not locked: more members could still come
    member = guest(service, int(created_eprs(created)[0].key(WORKSPACE_KEY)), tmp_path / "member")
    environment = member.environment(busybox) | {"VWS_CTX_DEADLINE": str(int(time.time()) + 2)}
    shell = [BUSYBOX, "sh"] if busybox else ["sh"]
    done = subprocess.run(
        [*shell, str(member.drive / "vws/context/agent.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout
    assert "VWS-CTX-AGENT error 3 retrieve: the context was not complete before" in done.stdout
    rp = contexts.status(gt4, context.epr)
    assert (rp["errorPresent"], rp["numNodesRegistered"]) == ("true", "1")


def test_agents_ride_out_a_restart_of_the_service(tmp_path, clock, busybox):
    """The head's agent reports, then waits while the service is stopped and started again; the worker comes after."""
    config = make_config(tmp_path / "state").with_overrides("pool", test_node_context_iso=True)
    first = Service(config, clock=clock)
    first.start()
    gt4 = Gt4Client(first.base_url, settle=settler(first))
    made = cluster(gt4, first, tmp_path)
    gt4.close()
    head = made.head.start(busybox)
    while "waiting for the context (200 wait)" not in (line := head.stdout.readline()):  # it has reported
        assert line, "the head's agent ended before it waited"
    first.stop()
    second = Service(config.with_overrides("service", listen=first.base_url.split("/")[2]), clock=clock)
    second.start()
    try:
        for agent in (head, made.worker.start(busybox)):
            code, output = finish(agent)
            assert code == 0, output
        gt4 = Gt4Client(second.base_url)
        rp = contexts.status(gt4, made.context.epr)
        assert (rp["complete"], rp["allOK"], rp["numNodesRegistered"]) == ("true", "true", "2")
        gt4.close()
    finally:
        second.stop()
