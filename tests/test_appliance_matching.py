"""Matching appliances to what a pool can host, over HTTP: what the factory publishes, what
create refuses (with the database unchanged), and where it places what it accepts."""

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from clients.workspace import main as client
from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import FACTORY_ACTION, SAMPLES, Gt4Client, SoapFault, create_body, created_eprs
from tests.test_pool_helpers import open_pool
from tests.test_wsdl import assert_valid
from vws.matching import Vmm
from vws.pool import nodes, testnode
from vws.pool.node_kinds import RETRY_SECONDS
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.xmlns import APPLIANCES, DEFINITION, JSDL, TYPES, WORKSPACE, qname

NIMBUS = Path(__file__).parent / "nimbus"


def documents(arch: str | None = None, vmm: tuple[str, ...] = (), memory: int | None = None):
    """The sample metadata and request, asking for ``arch``, the VMM ``vmm`` (type, versions...) and ``memory``."""
    metadata = etree.parse(str(SAMPLES / "workspace.xml")).getroot()
    request = etree.parse(str(SAMPLES / "deployment-request.xml")).getroot()
    requirements = metadata.find(f".//{{{DEFINITION}}}requirements")
    if arch is not None:
        requirements.find(f".//{{{JSDL}}}CPUArchitectureName").text = arch
    if vmm:
        element = etree.SubElement(requirements, qname(DEFINITION, "VMM"))
        etree.SubElement(element, qname(DEFINITION, "type")).text = vmm[0]
        for version in vmm[1:]:
            etree.SubElement(element, qname(DEFINITION, "version")).text = version
    if memory is not None:
        request.find(".//{*}IndividualPhysicalMemory/{*}Exact").text = str(memory)
    return metadata, request


def refusal(gt4: Gt4Client, metadata, request) -> SoapFault:
    with pytest.raises(SoapFault) as raised:
        gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request))
    return raised.value


def description(fault: SoapFault) -> str:
    return " ".join(text.strip() for text in fault.detail.itertext())


def rows(service: Service) -> tuple:
    with service.store.reading() as db:
        return tuple(
            db.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("workspaces", "pool_placements", "workspace_events")
        ) + (db.execute("select count(*) from leases where workspace_id is not null").fetchone()[0],)


@pytest.mark.parametrize(
    "arch, vmm, says",
    [
        ("sparc", (), ["CPU architecture sparc is not offered", "x86_64"]),
        (None, ("VMware", "9.9"), ["VMM VMware 9.9 is not offered", "TEST 0.0.2"]),
        (None, ("QEMU", "7"), ["VMM QEMU 7 is not offered", "TEST"]),
    ],
    ids=["architecture", "vmm-vmware", "vmm-qemu-on-a-test-pool"],
)
def test_a_requirement_no_node_meets_is_a_metadata_fault_naming_it_and_the_offer(service, gt4, arch, vmm, says):
    before = rows(service)
    fault = refusal(gt4, *documents(arch, vmm))
    assert fault.element == qname(TYPES, "WorkspaceMetadataFault")
    for words in says:
        assert words in description(fault)
    assert rows(service) == before
    assert service.manager.workspaces(SERVICE) == []


def test_nimbus_sample_asking_for_xen_3_on_x86_still_deploys(service, gt4):
    """Nimbus never checked the VMM, and its sample asks for Xen 3: ``[pool] legacy_vmm`` answers to it."""
    metadata = etree.parse(str(NIMBUS / "sample-workspace.xml")).getroot()
    request = etree.parse(str(NIMBUS / "sample-deployment-request.xml")).getroot()
    (epr,) = created_eprs(gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request)))
    assert gt4.state(epr) == "Running"


def test_without_legacy_vmm_xen_is_refused_too(tmp_path, clock):
    config = make_config(tmp_path / "state").with_overrides("pool", legacy_vmm=())
    with running(config, clock) as (service, gt4):
        fault = refusal(gt4, *documents(vmm=("Xen", "3")))
        assert fault.element == qname(TYPES, "WorkspaceMetadataFault")
        assert "VMM Xen 3 is not offered" in description(fault)


def test_more_memory_than_a_matching_node_gives_names_the_largest(service, gt4):
    before = rows(service)
    fault = refusal(gt4, *documents(memory=20000))
    assert fault.element == qname(TYPES, "WorkspaceSchedulingFault")
    assert "20000 MB of memory requested" in description(fault)
    assert "at most 16384 MB" in description(fault)
    assert rows(service) == before


# ---- a pool of two kinds ---------------------------------------------------------------------


class running:
    def __init__(self, config, clock) -> None:
        self.service = Service(config, clock=clock)

    def __enter__(self) -> tuple[Service, Gt4Client]:
        self.service.start()
        self.client = Gt4Client(self.service.base_url, settle=settler(self.service))
        return self.service, self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.service.stop()


@pytest.fixture
def two_kinds(tmp_path, clock):
    """A pool of an x86_64 node (8 GiB, 4 CPUs) and an aarch64 node (4 GiB, 4 CPUs)."""
    x86 = testnode.write_node(tmp_path / "x86.xml", 8192, 4, "x86_64")
    arm = testnode.write_node(tmp_path / "arm.xml", 4096, 4, "aarch64")
    (tmp_path / "nodes.conf").write_text(
        f"[x86]\nuri = {x86}\nmemory = 8192\ncpus = 4\n[arm]\nuri = {arm}\nmemory = 4096\ncpus = 4\n"
    )
    config = make_config(tmp_path / "two-kinds").with_overrides("pool", nodes_file=tmp_path / "nodes.conf")
    with running(config, clock) as both:
        yield both


def placed_node(service: Service, gt4: Gt4Client, metadata, request) -> str:
    (epr,) = created_eprs(gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", create_body(metadata, request)))
    return service.manager.get(SERVICE, int(epr.key(qname(WORKSPACE, "WorkspaceKey")))).node


def test_each_appliance_is_placed_on_a_node_of_its_own_kind(two_kinds):
    service, gt4 = two_kinds
    for _ in range(2):  # round-robin alone would alternate
        assert placed_node(service, gt4, *documents("arm")) == "arm"
        assert placed_node(service, gt4, *documents("aarch64")) == "arm"
        assert placed_node(service, gt4, *documents("x86_64")) == "x86"
        assert placed_node(service, gt4, *documents("x86")) == "x86"  # i686 runs on x86_64


def test_memory_is_matched_within_the_kind(two_kinds):
    service, gt4 = two_kinds
    fault = refusal(gt4, *documents("arm", memory=6000))
    assert fault.element == qname(TYPES, "WorkspaceSchedulingFault")
    assert "at most 4096 MB" in description(fault)
    assert placed_node(service, gt4, *documents("x86_64", memory=6000)) == "x86"


def offer(gt4: Gt4Client) -> list[etree._Element]:
    (published,) = gt4.get_property(gt4.factory(), qname(APPLIANCES, "offer"))
    return published.findall(qname(APPLIANCES, "kind"))


def kind_summary(kind: etree._Element) -> tuple:
    return (
        [arch.text for arch in kind.iter(qname(APPLIANCES, "architecture"))],
        [vmm.findtext(qname(APPLIANCES, "type")) for vmm in kind.iter(qname(APPLIANCES, "vmm"))],
        kind.findtext(qname(APPLIANCES, "memoryMB")),
        kind.findtext(qname(APPLIANCES, "cpus")),
        kind.get("nodes"),
    )


def test_the_factory_publishes_each_kind_and_keeps_it_current_as_nodes_come_and_go(two_kinds, tmp_path):
    service, gt4 = two_kinds
    assert sorted(kind_summary(kind) for kind in offer(gt4)) == [
        (["aarch64"], ["TEST"], "4096", "4", "1"),
        (["x86_64", "i686"], ["TEST"], "8192", "4", "1"),
    ]
    vmms = gt4.get_property(gt4.factory(), qname(DEFINITION, "VMM"))
    assert [(vmm.findtext(qname(DEFINITION, "type")), vmm.findtext(qname(DEFINITION, "version"))) for vmm in vmms] == [
        ("TEST", "0.0.2")
    ]
    big = testnode.write_node(tmp_path / "big.xml", 32768, 16, "aarch64")
    with service.store.transaction() as db:
        nodes.add_node(db, "big-arm", big, 32768, 16)
        nodes.update_node(db, "x86", active=False)
    assert sorted(kind_summary(kind) for kind in offer(gt4)) == [(["aarch64"], ["TEST"], "32768", "16", "2")]
    architecture = gt4.get_property(gt4.factory(), qname(JSDL, "CPUArchitectureName"))
    assert [name.text for name in architecture] == ["arm"]


def test_the_published_offer_and_vmm_validate_against_the_wsdl(two_kinds):
    _, gt4 = two_kinds
    for name in (qname(APPLIANCES, "offer"), qname(DEFINITION, "VMM")):
        for value in gt4.get_property(gt4.factory(), name):
            assert_valid("WorkspaceFactoryService", value)


# ---- vws-client match ------------------------------------------------------------------------


def written(tmp_path: Path, name: str, document: etree._Element) -> Path:
    path = tmp_path / name
    path.write_bytes(etree.tostring(document))
    return path


def test_match_says_for_each_factory_whether_it_can_run_the_appliance_and_why_not(service, two_kinds, tmp_path, capsys):
    factories = [running.base_url + "WorkspaceFactoryService" for running in (service, two_kinds[0])]
    metadata, request = documents("arm", memory=3000)
    files = ["--metadata", written(tmp_path, "arm.xml", metadata), "--request", written(tmp_path, "r.xml", request)]
    assert client(["--anonymous", "match", *map(str, files), "-s", *factories]) == 0
    embedded, pool = capsys.readouterr().out.splitlines()
    assert (
        embedded == f"{factories[0]}: cannot run it: CPU architecture arm is not offered: this pool offers i686, x86_64"
    )
    assert pool == f"{factories[1]}: can run it, on aarch64 under TEST 0.0.2: 1 node(s), up to 4096 MB, 4 CPUs"

    metadata, request = documents("arm", memory=6000)
    files = ["--metadata", written(tmp_path, "arm.xml", metadata), "--request", written(tmp_path, "r.xml", request)]
    assert client(["--anonymous", "match", *map(str, files), "-s", factories[1]]) == 3
    assert "cannot run it: 6000 MB of memory requested" in capsys.readouterr().out


def test_match_agrees_with_create_on_the_nimbus_sample(service, tmp_path, capsys):
    factory = service.base_url + "WorkspaceFactoryService"
    sample = NIMBUS / "sample-workspace.xml"
    assert client(["--anonymous", "-s", factory, "match", "--metadata", str(sample)]) == 0
    assert "can run it, on x86_64/i686 under TEST 0.0.2" in capsys.readouterr().out


# ---- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wanted, offered, accepted",
    [
        (Vmm("QEMU", ("7",)), Vmm("QEMU", ("7.2.0",)), True),
        (Vmm("qemu", ("7.2",)), Vmm("QEMU", ("7.2.0",)), True),
        (Vmm("QEMU", ("7.2",)), Vmm("QEMU", ("7.20.0",)), False),
        (Vmm("QEMU", ("8", "7")), Vmm("QEMU", ("7.2.0",)), True),
        (Vmm("KVM"), Vmm("QEMU", ("7.2.0",)), False),
    ],
)
def test_a_required_version_is_met_by_it_and_every_release_under_it(wanted, offered, accepted):
    assert wanted.accepts(offered) is accepted


def test_a_node_that_does_not_answer_is_not_asked_again_on_every_create(tmp_path, caplog):
    """Creation describes the nodes before its transaction: a node that cannot be reached is
    skipped for RETRY_SECONDS rather than costing every create a connection attempt."""
    store, pool = open_pool(tmp_path / "state")
    with store.transaction() as db:
        nodes.add_node(db, "gone", "qemu+tcp://127.0.0.1:1/system", 4096, 4)  # refused at once
    caplog.set_level(logging.WARNING, logger="vws.pool.node_kinds")
    for _ in range(3):
        pool.describe_nodes()
    assert sum("gone: cannot read what it hosts" in message for message in caplog.messages) == 1
    pool._clock.advance(timedelta(seconds=RETRY_SECONDS))
    pool.describe_nodes()
    assert sum("gone: cannot read what it hosts" in message for message in caplog.messages) == 2
    assert [kind.nodes for kind in pool.offer().kinds] == [1]  # node1 alone is offered
