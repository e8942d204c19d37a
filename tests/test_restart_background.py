"""A restarted service answers at once, however many workspaces live.

Its nodes are taken up in the background (the work a crash cut off finished, the domains
compared with the store); meanwhile reads are answered from the store, and whatever would
change a workspace waits until its node is taken up, so nothing is decided on a view of
the node not checked yet.

The node here is a test-driver node whose file is a named pipe at the restart: opening
the node waits until the test writes the file, so the test decides when the node's
taking up can end, and sees what the service answers before.
"""

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import resources
from tests.conftest import make_config
from tests.deployments import Deployments
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from tests.logwatch import LogWatch
from vws.pool import testnode
from vws.service import Service
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import WORKSPACE, qname

LIVE = 200
MEMORY_MB, CPUS = 1 << 20, 1024


class Node:
    """One test-driver node, named in a nodes file, with a network pool big enough for LIVE workspaces."""

    def __init__(self, root: Path) -> None:
        self.file = root / "node.xml"
        uri = testnode.write_node(self.file, MEMORY_MB, CPUS)
        (root / "nodes.conf").write_text(f"[big]\nuri = {uri}\nmemory = {MEMORY_MB}\ncpus = {CPUS}\n")
        pools = root / "network-pools"
        pools.mkdir()
        addresses = "".join(f"h{n} 10.1.{n // 256}.{n % 256} none none none\n" for n in range(1, LIVE + 10))
        (pools / "public").write_text("none\n" + addresses)
        self.settings = {"nodes_file": root / "nodes.conf", "network_pools_dir": pools}

    def block(self) -> None:
        """From now on, opening the node waits until ``release``."""
        self.file.unlink()
        os.mkfifo(self.file)

    def release(self) -> None:
        """Let the node be opened: the file is written (once a reader waits for it)."""
        if self.file.is_fifo():
            with self.file.open("w") as pipe:
                pipe.write(testnode.node_xml(MEMORY_MB, CPUS))
            self.file.unlink()  # written once: the node file it stands for
            testnode.write_node(self.file, MEMORY_MB, CPUS)


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


@pytest.fixture
def config(tmp_path, node):
    return make_config(tmp_path / "state").with_overrides("pool", **node.settings)


def key_of(epr: EndpointReference) -> int:
    return int(epr.key(qname(WORKSPACE, "WorkspaceKey")))


@pytest.fixture
def live(config, clock) -> list[EndpointReference]:
    """LIVE Running workspaces, made by a service that is then stopped."""
    service = Service(config, clock=clock)
    service.start()
    deployments = Deployments(service.manager, service.store)
    client = Gt4Client(service.base_url)
    try:
        eprs = created_eprs(resources.create(client, resources.create_request(node_number=LIVE)))
        deployments.settle(timeout=120)
    finally:
        client.close()
        service.stop()
    return eprs


def leave_as_killed(config, statements: list[tuple[str, list[object]]]) -> None:
    """Change the stopped service's records as a kill, or a change behind its back, leaves them."""
    db = sqlite3.connect(config.service.state_dir / "vws.sqlite")
    try:
        with db:
            for sql, parameters in statements:
                db.execute(sql, parameters)
    finally:
        db.close()


@contextmanager
def restarted(config, clock, node: Node) -> Iterator[Service]:
    """The service started again while its node cannot be opened; start() must return all the same."""
    node.block()
    service = Service(config, clock=clock)
    starting = threading.Thread(target=service.start)
    starting.start()
    starting.join(timeout=30)
    try:
        assert not starting.is_alive(), "start() waited for the node to be taken up"
        yield service
    finally:
        node.release()  # whatever still waits for the node may go on
        starting.join()
        service.stop()


def test_a_restarted_service_answers_before_its_node_is_taken_up_and_decides_nothing_on_stale_state(
    config, node, live, clock, caplog
):
    caplog.set_level(logging.INFO, "vws.workspace.records")
    healthy, cut_off, vanished = live[0], live[1], live[2]
    leave_as_killed(
        config,
        [  # killed after libvirt shut the domain down, before the shutdown was committed
            ("update workspaces set operation = 'shutdown' where id = ?", [key_of(cut_off)]),
            ("update pool_domains set state = 'shutoff' where workspace_id = ?", [key_of(cut_off)]),
            # and a domain gone while the service was down
            ("delete from pool_domains where workspace_id = ?", [key_of(vanished)]),
        ],
    )
    with restarted(config, clock, node) as service:
        client = Gt4Client(service.base_url)
        # Answered from the store while the node cannot even be opened.
        assert [client.state(epr) for epr in (healthy, cut_off, vanished)] == ["Running"] * 3
        # An operation waits for the node: decided now, it would find the cut-off shutdown
        # not settled yet (a Running workspace cannot be started) and be refused.
        answers: list[str] = []
        starting = threading.Thread(target=lambda: answers.append(start(service, cut_off)))
        with LogWatch("vws.workspace.records", "waiting until node big is taken up") as waiting:
            starting.start()
            assert waiting.wait(timeout=30), "the start did not wait for the node"
        node.release()
        findings = service.manager.recovered()
        starting.join()
        assert answers == ["Running"]
        assert f"workspace {key_of(cut_off)}: its shutdown was cut off after libvirt did it; now propagated" in (
            findings
        )
        assert [client.state(epr) for epr in (healthy, vanished)] == ["Running", "Corrupted"]
        census = service.manager.census()
        assert (census["running"], census["corrupted"]) == (LIVE - 1, 1)  # no healthy workspace Corrupted
        client.shutdown(healthy)  # and operations go on as before
        assert client.state(healthy) == "Propagated"
        client.close()


def start(service: Service, epr: EndpointReference) -> str:
    """Start the workspace on a connection of its own; the state it left, or the fault."""
    client = Gt4Client(service.base_url)
    try:
        client.start(epr)
        return client.state(epr)
    except SoapFault as fault:
        return str(fault)
    finally:
        client.close()
