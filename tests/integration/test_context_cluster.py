"""Issue #12 acceptance: two real guests in one context, a head node and a worker.

Both are deployed through the factory with the context's EPR; each boots (qemu TCG), finds
the agent and its bootstrap on its config drive, reaches the broker through its user-mode
NIC (the host is 10.0.2.2 there, so the service's agent_url names that address), and
reports. The head requires every identity; the worker requires the head's role and data
injected for it. Each console must show the other's hostname and IP in its hosts file, the
worker its role and data, both agents ok; the broker's resource property must say so.
"""

import socket

import libvirt
import pytest
from lxml import etree

from tests import contexts
from tests.gt4wire import FACTORY_ACTION, Gt4Client, create_body, created_eprs
from tests.integration import deploy, guest
from tests.integration.console import console_lines, wait_for_line
from tests.integration.deploy import BOOT_TIMEOUT, console_path, domain_name

JOBS = "queue=batch\nslots=4\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


PORT = _free_port()


@pytest.fixture
def node_memory_mb() -> int:
    return 2 * deploy.MEMORY_MB


@pytest.fixture
def node_cpus() -> int:
    return 2


@pytest.fixture
def service_options() -> dict[str, object]:
    # Guests reach the host's loopback through slirp's gateway address.
    return {"listen": f"127.0.0.1:{PORT}", "agent_url": f"http://10.0.2.2:{PORT}/ctx/"}


def member(gt4: Gt4Client, context: contexts.Created, **member: object) -> etree._Element:
    """The test guest's create (deploy.METADATA, deploy.REQUEST) joining the context."""
    metadata = deploy.METADATA.format(
        pool=deploy.POOL, kernel="vmlinuz", initrd="initrd.img", base="base.qcow2", cmdline=guest.CMDLINE
    )
    body = create_body(etree.fromstring(metadata), etree.fromstring(deploy.REQUEST))
    contexts.contextualize(body, context.epr, **member)  # type: ignore[arg-type]
    return gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", body)


def test_two_guests_learn_each_other_through_the_broker(
    service, gt4: Gt4Client, connection: libvirt.virConnect, record_property
) -> None:
    context = contexts.create_context(gt4, expect_injections=True)
    assert context.broker_url == f"http://10.0.2.2:{PORT}/ctx/"
    contexts.inject(gt4, context.epr, jobs=JOBS)
    contexts.no_more_injections(gt4, context.epr)
    head = member(gt4, context, provides=("head",))
    worker = member(gt4, context, requires_roles=("head",), requires_data=("jobs",), all_identities=False, lock=True)
    (head_ip, head_name), (worker_ip, worker_name) = contexts.addresses(head) + contexts.addresses(worker)
    consoles = {
        name: console_path(connection.lookupByName(domain_name(created_eprs(created)[0])))
        for name, created in (("head", head), ("worker", worker))
    }

    for console in consoles.values():
        wait_for_line(console, r"^VWS-CTX-AGENT-EXIT ", 3 * BOOT_TIMEOUT)
    head_lines, worker_lines = (console_lines(console) for console in consoles.values())
    for lines in (head_lines, worker_lines):
        assert "VWS-CTX-AGENT ok" in lines and "VWS-CTX-AGENT-EXIT 0" in lines, "\n".join(lines)
        assert f"VWS-CTX-HOSTS {head_ip} {head_name} {head_name.split('.')[0]}" in lines
    assert f"VWS-CTX-HOSTS {worker_ip} {worker_name} {worker_name.split('.')[0]}" in head_lines
    assert f"VWS-CTX-ROLE head {head_ip} {head_name.split('.')[0]} {head_name}" in worker_lines
    assert [line for line in worker_lines if line.startswith("VWS-CTX-DATA ")] == [
        "VWS-CTX-DATA jobs queue=batch",
        "VWS-CTX-DATA jobs slots=4",
    ]
    rp = contexts.status(gt4, context.epr)
    assert (rp["complete"], rp["allOK"], rp["numNodesRegistered"], rp["errorPresent"]) == ("true", "true", "2", "false")
    for created in (head, worker):
        gt4.destroy(created_eprs(created)[0])
    contexts.destroy(gt4, context.epr)
