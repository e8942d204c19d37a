"""Issue #14, enforcement: a deployment request's CPUPercentage and NIC bandwidth become the
domain's <cputune> and <bandwidth>, the ResourceAllocation property says what was granted,
and what policy or the nodes cannot grant is refused with the declared fault, reserving nothing."""

import dataclasses

import pytest

from tests.allocations import allocation_body, deploy, domain, exact, granted
from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client, SoapFault
from vws.pool import placement
from vws.pool.machine import MachineRequest, NicBandwidth, NicRequest, Rate
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.workspace.request import DeploymentRequest
from vws.xmlns import TYPES, qname


def test_cpu_percentage_becomes_a_cfs_quota_per_vcpu_and_a_weight(gt4, service):
    epr = deploy(gt4, allocation_body(cpu_percent=20, vcpus=2))
    tune = domain(service, epr).find("cputune")
    assert (tune.findtext("period"), tune.findtext("quota"), tune.findtext("shares")) == ("100000", "20000", "409")
    assert domain(service, epr).findtext("vcpu") == "2"


def test_without_cpu_percentage_the_domain_is_not_capped(gt4, service):
    epr = deploy(gt4, allocation_body())
    assert domain(service, epr).find("cputune") is None
    assert exact(granted(gt4, epr), "neg:CPUPercentage") is None


def test_bandwidth_in_bits_per_second_becomes_libvirt_kib_per_second_on_that_nic(gt4, service):
    epr = deploy(gt4, allocation_body(bandwidth={"eth0": (8_192_000, 819_200)}))
    shaping = domain(service, epr).find("devices/interface/bandwidth")
    assert shaping.find("inbound").get("average") == "1000"
    assert shaping.find("outbound").get("average") == "100"


def test_the_property_says_what_was_granted_rounded_to_what_libvirt_shapes(gt4):
    epr = deploy(gt4, allocation_body(cpu_percent=50, vcpus=2, bandwidth={"eth0": (1_000_000, None)}))
    allocation = granted(gt4, epr)
    assert exact(allocation, "neg:CPUPercentage") == "50"
    assert exact(allocation, "jsdl:IndividualCPUCount") == "2"
    assert exact(allocation, "neg:Bandwidth/neg:nic/neg:IncomingNetworkBandwidth") == str(123 * 8192)
    assert exact(allocation, "neg:Bandwidth/neg:nic/neg:OutgoingNetworkBandwidth") is None


@pytest.fixture
def strict(tmp_path, clock):
    """A service whose policy grants at most half a CPU per vCPU and 8 megabits/s per NIC direction."""
    config = make_config(tmp_path / "state", maximum_cpu_percentage=50, maximum_bandwidth_mbps=8)
    running = Service(config, clock=clock)
    running.start()
    client = Gt4Client(running.base_url, settle=settler(running))
    yield running, client
    client.close()
    running.stop()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (allocation_body(cpu_percent=60), "CPUPercentage 60 requested; at most 50 allowed"),
        (allocation_body(bandwidth={"eth0": (None, 9_000_000)}), "outgoing bandwidth above the 8 megabits/s"),
    ],
)
def test_above_a_policy_maximum_is_denied_and_reserves_nothing(strict, body, why):
    service, client = strict
    with pytest.raises(SoapFault) as raised:
        deploy(client, body)
    assert raised.value.element == qname(TYPES, "WorkspaceResourceRequestDeniedFault")
    assert why in raised.value.description
    assert service.manager.workspaces(SERVICE) == [] and service.pool.loads()[0].used_memory_mb == 0


def test_within_the_policy_maximum_is_granted(strict):
    service, client = strict
    epr = deploy(client, allocation_body(cpu_percent=50, bandwidth={"eth0": (8_000_000, None)}))
    assert domain(service, epr).find("cputune/quota").text == "50000"


@pytest.mark.parametrize(
    ("allocation", "why"),
    [
        (dict(cpu_percent=0), "CPUPercentage must be a whole number from 1 to 100"),
        (dict(cpu_percent=150), "CPUPercentage must be a whole number from 1 to 100"),
        (dict(bandwidth={"eth9": (1000, None)}), "Bandwidth names nic 'eth9'"),
    ],
)
def test_an_allocation_that_means_nothing_is_a_metadata_fault(gt4, service, allocation, why):
    with pytest.raises(SoapFault) as raised:
        deploy(gt4, allocation_body(**allocation))
    assert raised.value.element == qname(TYPES, "WorkspaceMetadataFault")
    assert why in raised.value.description
    assert service.manager.workspaces(SERVICE) == []


# ---- a node that cannot enforce it -----------------------------------------------------------

SHAPED = MachineRequest(256, nics=(NicRequest("eth0", "public"),), bandwidth=(NicBandwidth("eth0", Rate(100)),))


def test_only_nodes_that_can_shape_the_nics_pool_take_a_shaped_request():
    unbridged = placement.NodeLoad("qemu1", 4096, 4, shapes=frozenset({"private"}))
    bridged = placement.NodeLoad("qemu2", 1024, 4, shapes=frozenset({"public"}))
    demand = placement.demand(SHAPED)
    assert placement.place_group([unbridged, bridged], demand, 1, placement.round_robin) == ["qemu2"]
    assert placement.place_group([unbridged], placement.demand(MachineRequest(256)), 1, placement.round_robin)


def test_a_shaped_request_no_node_can_enforce_is_refused_saying_why():
    unbridged = placement.NodeLoad("qemu1", 4096, 4, shapes=frozenset())
    with pytest.raises(placement.SchedulingFailed) as raised:
        placement.check_room([unbridged], placement.demand(SHAPED), 1)
    assert "no active node can enforce bandwidth on network pool(s) public" in raised.value.description


def test_the_stored_request_keeps_what_enforcement_needs_across_a_restart():
    request = DeploymentRequest("ws", dataclasses.replace(SHAPED, cpu_percent=30))
    assert DeploymentRequest.from_json(request.to_json()) == request
