"""Issue #14, live renegotiation: SetResourceProperties (an Update of ResourceAllocation) on a
workspace is granted live where libvirt can, refused when the node has no room or libvirt
cannot and the caller did not ask to wait, or applied from the next start when asked; the
node's books follow in the same transactions, and a crash between libvirt and the store is
finished at start-up."""

from dataclasses import replace

import pytest
from lxml import etree

from clients.listener import NotificationListener
from clients.workspace import main as client_main
from tests.allocations import allocation_body, deploy, domain, exact, granted, set_allocation
from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import Gt4Client, SoapFault
from tests.resources import subscribe
from tests.workspaces import ALICE, layer, request
from vws.pool.machine import Allocation
from vws.service import Service
from vws.xmlns import JSDL, NEGOTIABLE, TOPIC_SIMPLE, TYPES, WSNT, WSNT_ACTION, WSRP, WSRP_ACTION, qname

UNMODIFIABLE = qname(WSRP, "UnableToModifyResourcePropertyFault")


def serve(state, clock, **pool):
    config = make_config(state).with_overrides("pool", live_headroom_percent=100, **pool)
    running = Service(config, clock=clock)
    running.start()
    return running, Gt4Client(running.base_url, settle=settler(running))


@pytest.fixture
def elastic(tmp_path, clock):
    """A service whose domains may grow live to twice their grant."""
    running, client = serve(tmp_path / "state", clock)
    yield running, client
    client.close()
    running.stop()


def memory_of(service, epr) -> tuple[str, str]:
    """(current, maximum) memory of the running domain, in KiB."""
    described = domain(service, epr)
    return described.findtext("currentMemory"), described.findtext("memory")


def test_growing_within_the_headroom_is_granted_live(elastic):
    service, client = elastic
    epr = deploy(client, allocation_body(memory_mb=256, vcpus=1))
    assert memory_of(service, epr) == (str(256 * 1024), str(512 * 1024))
    set_allocation(client, epr, memory_mb=512, vcpus=2)
    assert memory_of(service, epr) == (str(512 * 1024), str(512 * 1024))
    vcpu = domain(service, epr).find("vcpu")
    assert vcpu.get("current", vcpu.text) == "2"  # libvirt leaves current out once it is the maximum
    allocation = granted(client, epr)
    assert (exact(allocation, "jsdl:IndividualPhysicalMemory"), exact(allocation, "jsdl:IndividualCPUCount")) == (
        "512",
        "2",
    )
    assert service.pool.loads()[0].used_memory_mb == 512


def test_shrinking_gives_the_memory_back_to_the_node(elastic):
    service, client = elastic
    epr = deploy(client, allocation_body(memory_mb=512))
    set_allocation(client, epr, memory_mb=128)
    assert memory_of(service, epr)[0] == str(128 * 1024)
    assert service.pool.loads()[0].used_memory_mb == 128


def test_more_than_the_node_has_free_is_refused_and_changes_nothing(elastic):
    service, client = elastic
    epr = deploy(client, allocation_body(memory_mb=8192))
    deploy(client, allocation_body(memory_mb=8000))  # the 16 GiB node now has 192 MB free
    with pytest.raises(SoapFault) as raised:
        set_allocation(client, epr, memory_mb=8192 + 256)
    assert raised.value.element == UNMODIFIABLE
    assert "node node1 has 192 MB" in raised.value.description
    assert exact(granted(client, epr), "jsdl:IndividualPhysicalMemory") == "8192"
    assert memory_of(service, epr)[0] == str(8192 * 1024)
    assert service.pool.loads()[0].used_memory_mb == 8192 + 8000


def test_beyond_what_the_domain_can_grow_to_live_is_refused(elastic):
    service, client = elastic
    epr = deploy(client, allocation_body(memory_mb=256))
    with pytest.raises(SoapFault) as raised:
        set_allocation(client, epr, memory_mb=1024)
    assert raised.value.element == UNMODIFIABLE
    assert "can grow live to at most 512 MB" in raised.value.description
    assert service.pool.loads()[0].used_memory_mb == 256


def test_what_libvirt_cannot_apply_live_is_applied_from_the_next_start_when_asked(elastic):
    service, client = elastic
    epr = deploy(client, allocation_body(memory_mb=256, cpu_percent=50))
    with pytest.raises(SoapFault) as raised:  # the test driver cannot change a CPU share live
        set_allocation(client, epr, cpu_percent=20)
    assert raised.value.element == UNMODIFIABLE
    set_allocation(client, epr, cpu_percent=20, memory_mb=1024, at_next_start=True)
    assert exact(granted(client, epr), "neg:CPUPercentage") == "20"
    assert domain(service, epr).findtext("cputune/quota") == "50000"  # the running guest: as it was
    assert service.pool.loads()[0].used_memory_mb == 1024  # held from now: the larger of the two
    client.shutdown(epr)
    client.start(epr)
    assert domain(service, epr).findtext("cputune/quota") == "20000"
    assert memory_of(service, epr)[0] == str(1024 * 1024)
    assert service.pool.loads()[0].used_memory_mb == 1024


def test_a_workspace_not_yet_on_its_node_cannot_be_renegotiated(gt4):
    epr = deploy(gt4, allocation_body(initial_state="Unpropagated"))
    with pytest.raises(SoapFault) as raised:
        set_allocation(gt4, epr, memory_mb=512)
    assert raised.value.element == UNMODIFIABLE
    assert "is Unpropagated" in raised.value.description


def test_subscribers_to_the_resource_allocation_topic_hear_what_was_granted(elastic):
    service, client = elastic
    epr = deploy(client, allocation_body(memory_mb=256))
    with NotificationListener(("127.0.0.1", 0)) as listener:
        subscribe(client, epr, listener.consumer_reference(client.base_url), qname(NEGOTIABLE, "ResourceAllocation"))
        set_allocation(client, epr, memory_mb=384)
        notification = listener.received.get(timeout=10)
    assert notification.topic == qname(NEGOTIABLE, "ResourceAllocation")
    memory = f".//{{{NEGOTIABLE}}}ResourceAllocation/{{{JSDL}}}IndividualPhysicalMemory/{{{JSDL}}}Exact"
    assert notification.message.findtext(memory) == "384"
    body = etree.Element(qname(WSNT, "GetCurrentMessage"), nsmap={"wsnt": WSNT, "neg": NEGOTIABLE})
    etree.SubElement(body, qname(WSNT, "Topic"), Dialect=TOPIC_SIMPLE).text = "neg:ResourceAllocation"
    assert client.call(epr, WSNT_ACTION + "GetCurrentMessage", body).findtext(memory) == "384"


# ---- a crash between libvirt and the store ----------------------------------------------------


@pytest.fixture
def layer_running(tmp_path, clock):
    with layer(tmp_path, clock, domain_events=False) as vws:
        (created,) = vws.manager.create(ALICE, request())  # 256 MB, 1 vCPU; no live headroom
        vws.settle()
        yield vws, vws.manager.get(ALICE, created.id)


def cut_off(vws, workspace, memory_mb: int, *, applied: bool) -> None:
    """A renegotiation killed after reserving (and, ``applied``, after libvirt took it)."""
    old = Allocation.of(workspace.request.machine)
    with vws.store.transaction() as db:
        resize = vws.pool.reserve_resize(db, workspace.id, old, replace(old, memory_mb=memory_mb), live=True)
    if applied:
        vws.pool.resize(resize)


def current_memory_mb(vws, workspace) -> int:
    described = etree.fromstring(vws.pool._driver(workspace.node).xml(workspace.domain))
    return int(described.findtext("currentMemory")) // 1024


@pytest.mark.parametrize("applied", [False, True])
def test_a_renegotiation_cut_off_is_finished_at_start_up(layer_running, applied):
    vws, workspace = layer_running
    cut_off(vws, workspace, 128, applied=applied)
    assert vws.pool.loads()[0].used_memory_mb == 256  # held: the larger of the two
    findings = vws.restart()
    assert findings == [f"workspace {workspace.id}: its renegotiation was cut off; finished (live)"]
    again = vws.manager.get(ALICE, workspace.id)
    assert again.request.machine.memory_mb == 128 and current_memory_mb(vws, again) == 128
    assert vws.pool.loads()[0].used_memory_mb == 128 and vws.pool.pending_resizes() == []


def test_a_renegotiation_cut_off_that_libvirt_now_refuses_is_undone_at_start_up(layer_running):
    vws, workspace = layer_running
    cut_off(vws, workspace, 1024, applied=False)  # beyond what the domain can grow to live
    assert vws.pool.loads()[0].used_memory_mb == 1024
    (finding,) = vws.restart()
    assert "its renegotiation was cut off and is refused now" in finding
    again = vws.manager.get(ALICE, workspace.id)
    assert again.request.machine.memory_mb == 256 and current_memory_mb(vws, again) == 256
    assert vws.pool.loads()[0].used_memory_mb == 256 and vws.pool.pending_resizes() == []


def test_vws_client_renegotiate_prints_the_grant_or_the_refusal(elastic, tmp_path, capsys):
    service, _ = elastic

    def run(*argv: object) -> tuple[int, str]:
        code = client_main(["-s", service.base_url + "WorkspaceFactoryService", "--anonymous", *map(str, argv)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    epr = tmp_path / "ws.epr"
    assert run("deploy", "--eprFile", epr, "--poll", "--poll-delay", 10)[0] == 0
    assert run("renegotiate", "--memory", 512, "--cpus", 2, "--eprFile", epr) == (0, "granted: 512 MB, 2 CPUs\n")
    code, out = run("renegotiate", "--memory", 4096, "--eprFile", epr)
    assert code == 1 and "can grow live to at most 512 MB" in out
    code, out = run("renegotiate", "--cpu-percent", 25, "--at-next-start", "--eprFile", epr)
    assert (code, out) == (0, "granted: 512 MB, 2 CPUs, 25% of a CPU each\n")


def set_properties(client, epr, *components: etree._Element) -> etree._Element:
    body = etree.Element(qname(WSRP, "SetResourceProperties"), nsmap={"wsrp": WSRP})
    body.extend(components)
    return client.call(epr, WSRP_ACTION + "SetResourceProperties", body)


def component(kind: str, *values: etree._Element, **attributes: str) -> etree._Element:
    element = etree.Element(qname(WSRP, kind), **attributes)
    element.extend(values)
    return element


def test_bandwidth_is_renegotiated_live_on_the_nic(elastic):
    service, client = elastic
    epr = deploy(client, allocation_body(bandwidth={"eth0": (8_192_000, None)}))
    value = etree.Element(qname(NEGOTIABLE, "ResourceAllocation"))
    nic = etree.SubElement(etree.SubElement(value, qname(NEGOTIABLE, "Bandwidth")), qname(NEGOTIABLE, "nic"))
    etree.SubElement(nic, qname(NEGOTIABLE, "name")).text = "eth0"
    rate = etree.SubElement(nic, qname(NEGOTIABLE, "OutgoingNetworkBandwidth"))
    etree.SubElement(rate, qname(JSDL, "Exact")).text = "819200"
    set_properties(client, epr, component("Update", value))
    shaping = domain(service, epr).find("devices/interface/bandwidth")
    assert shaping.find("inbound") is None and shaping.find("outbound").get("average") == "100"
    assert exact(granted(client, epr), "neg:Bandwidth/neg:nic/neg:OutgoingNetworkBandwidth") == "819200"


def allocation(memory_mb: int) -> etree._Element:
    value = etree.Element(qname(NEGOTIABLE, "ResourceAllocation"))
    memory = etree.SubElement(value, qname(JSDL, "IndividualPhysicalMemory"))
    etree.SubElement(memory, qname(JSDL, "Exact")).text = str(memory_mb)
    return value


@pytest.mark.parametrize(
    ("components", "fault", "why"),
    [
        (lambda: [component("Insert", allocation(512))], "UnableToModifyResourcePropertyFault", "only updated"),
        (
            lambda: [component("Delete", ResourceProperty="neg:ResourceAllocation")],
            "UnableToModifyResourcePropertyFault",
            "can be deleted",
        ),
        (
            lambda: [component("Update", etree.Element(qname(TYPES, "schedule")))],
            "UnableToModifyResourcePropertyFault",
            "only ResourceAllocation can be set",
        ),
        (
            lambda: [component("Update", etree.Element(qname(TYPES, "noSuchProperty")))],
            "InvalidResourcePropertyQNameFault",
            "no resource property",
        ),
        (lambda: [], "InvalidSetResourcePropertiesRequestContentFault", "exactly one Update"),
        (lambda: [component("Update", allocation(0))], "InvalidSetResourcePropertiesRequestContentFault", "from 1"),
    ],
)
def test_what_is_not_a_renegotiation_gets_its_declared_fault_and_changes_nothing(elastic, components, fault, why):
    service, client = elastic
    epr = deploy(client, allocation_body(memory_mb=256))
    with pytest.raises(SoapFault) as raised:
        set_properties(client, epr, *components())
    assert raised.value.element == qname(WSRP, fault)
    assert why in raised.value.description
    assert exact(granted(client, epr), "jsdl:IndividualPhysicalMemory") == "256"
