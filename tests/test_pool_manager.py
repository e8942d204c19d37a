"""PoolManager as the workspace layer drives it: lifecycle, restart survival, nodes, events."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lxml import etree

from tests.test_pool_helpers import SMALL, WITH_NIC, Events, destroy, open_pool, reserve
from vws.config import PoolConfig
from vws.errors import InvalidMetadata
from vws.pool import context_drive, nodes
from vws.pool.machine import ContextFile, DiskRequest, KernelRequest, MachineRequest, NicRequest
from vws.pool.manager import UNREACHABLE

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_default_is_one_test_node_with_8_cpus_and_16_gib(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    with store.reading() as db:
        (node,) = nodes.list_nodes(db)
    assert (node.name, node.memory_mb, node.cpus, node.origin) == ("node1", 16384, 8, "embedded")
    assert node.uri == "test://" + str((tmp_path / "state" / "nodes" / "node1" / "node.xml").resolve())
    assert pool._driver("node1").capacity().memory_mb == 16384
    assert (tmp_path / "state" / "images" / "ttylinux-xen").exists()
    assert pool.associations() == ["public"]


def test_lifecycle_is_reflected_in_domain_states(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, WITH_NIC)[0]
    key = (placed.node, placed.domain)
    pool.define(placed, WITH_NIC)
    assert pool.domain_states() == {key: "shutoff"}
    pool.start(*key)
    assert pool.domain_states()[key] == "running"
    pool.suspend(*key)
    assert pool.domain_states()[key] == "paused"
    pool.resume(*key)
    pool.reboot(*key)
    assert pool.domain_states()[key] == "running"
    pool.shutdown(*key)
    assert pool.domain_states()[key] == "shutoff"
    destroy(store, pool, placed)
    assert pool.domain_states() == {}
    pool.remove(*key)  # idempotent


def test_domain_xml_carries_the_lease_mac_the_owner_and_the_console(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, WITH_NIC)[0]
    pool.define(placed, WITH_NIC)
    domain = etree.fromstring(pool._driver("node1").xml(placed.domain).encode())
    assert domain.get("type") == "test"
    assert domain.find("devices/interface/mac").get("address") == placed.leases[0].mac
    owner = domain.find("metadata/{urn:vws:libvirt:domain:1}workspace")
    assert owner.get("id") == str(placed.workspace_id)
    console = domain.find("devices/serial/source").get("path")
    assert console.startswith(str(tmp_path / "state" / "nodes" / "node1" / "domains" / placed.domain))
    assert domain.find("devices/disk/driver").get("type") == "qcow2"


def test_lifecycle_events_reach_on_event(tmp_path):
    events = Events()
    store, pool = open_pool(tmp_path / "state", on_event=events)
    placed = reserve(store, pool, SMALL)[0]
    pool.define(placed, SMALL)
    pool.start(placed.node, placed.domain)
    assert events.wait_for(lambda seen: ("node1", placed.domain, "started") in seen)


# ---- restart survival on test nodes ---------------------------------------------------------


def test_reopening_brings_back_defined_running_and_paused_domains(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    running, paused, defined, removed = reserve(store, pool, WITH_NIC, 4)
    for placed in (running, paused, defined, removed):
        pool.define(placed, WITH_NIC)
    pool.start(running.node, running.domain)
    pool.start(paused.node, paused.domain)
    pool.suspend(paused.node, paused.domain)
    destroy(store, pool, removed)
    before = pool.domain_states()
    pool.close()
    store.close()
    store, pool = open_pool(tmp_path / "state")
    assert (
        pool.domain_states()
        == before
        == {
            ("node1", running.domain): "running",
            ("node1", paused.domain): "paused",
            ("node1", defined.domain): "shutoff",
        }
    )
    pool.resume(paused.node, paused.domain)  # the restored domains are driven as before
    destroy(store, pool, running)
    assert pool.domain_states() == {("node1", paused.domain): "running", ("node1", defined.domain): "shutoff"}


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.test_pool_helpers import WITH_NIC, open_pool, reserve
    store, pool = open_pool(Path({state!r}))
    running, paused, defined = reserve(store, pool, WITH_NIC, 3)
    for placed in (running, paused, defined):
        pool.define(placed, WITH_NIC)
    pool.start(running.node, running.domain)
    pool.start(paused.node, paused.domain)
    pool.suspend(paused.node, paused.domain)
    print(repr(sorted(pool.domain_states().items())), flush=True)
    sys.stdin.read()  # stay up until killed
    """
)


def test_sigkill_then_restart_what_libvirt_runs_matches(tmp_path):
    state = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), state=str(state))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        before = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert "running" in before and "paused" in before and "shutoff" in before
    store, pool = open_pool(state)
    assert repr(sorted(pool.domain_states().items())) == before
    with store.reading() as db:  # the leases came back with the workspaces
        assert db.execute("select count(*) from leases where workspace_id is not null").fetchone()[0] == 3


# ---- nodes: file, admin functions, health ---------------------------------------------------


def test_nodes_file_is_synced_and_retired_nodes_are_drained(tmp_path):
    nodes_file = tmp_path / "nodes.conf"
    node_xml = tmp_path / "n.xml"
    node_xml.write_text("<node><cpu><active>4</active></cpu><memory>4194304</memory></node>")
    nodes_file.write_text(
        f"[alpha]\nuri = test://{node_xml}\nmemory = 4096\ncpus = 4\nnetworks = public\n"
        f"[beta]\nuri = test://{node_xml}\nmemory = 2048  # MB\nactive = no\n"
    )
    config = PoolConfig(nodes_file=nodes_file)
    store, pool = open_pool(tmp_path / "state", config)
    with store.reading() as db:
        listed = {node.name: node for node in nodes.list_nodes(db)}
    assert set(listed) == {"alpha", "beta"}  # no embedded node when a file is given
    assert listed["alpha"].networks == ("public",) and not listed["beta"].active and listed["beta"].cpus == 1
    placed = reserve(store, pool, WITH_NIC)[0]
    assert placed.node == "alpha"
    pool.close()
    nodes_file.write_text(f"[beta]\nuri = test://{node_xml}\nmemory = 2048\n")
    store, pool = open_pool(tmp_path / "state", config)
    with store.reading() as db:
        listed = {node.name: node for node in nodes.list_nodes(db)}
    assert not listed["alpha"].active and listed["beta"].active  # alpha holds a workspace: drained, kept


def test_shipped_nodes_conf_parses(tmp_path):
    parsed = {node.name: node for node in nodes.read_nodes_file(ROOT / "etc" / "nodes.conf")}
    assert parsed["node1"].networks == ("public", "private") and parsed["node1"].memory_mb == 7680
    assert not parsed["node2"].active
    assert parsed["node1"].images == nodes.UPLOAD and parsed["node2"].images is None


@pytest.mark.parametrize(
    ("uri", "mode"),
    [
        ("test:///default", nodes.LOCAL),
        ("qemu:///system", nodes.LOCAL),
        ("qemu+ssh://root@localhost/system", nodes.LOCAL),
        ("qemu+tcp://127.0.0.1/system", nodes.LOCAL),
        ("qemu+ssh://root@node1.example.org/system", nodes.UPLOAD),
        ("qemu+tls://node2.example.org/system", nodes.UPLOAD),
    ],
)
def test_image_mode_defaults_from_the_uri(uri, mode):
    assert nodes.Node("n", uri, 1, 1).image_mode == mode
    other = nodes.UPLOAD if mode == nodes.LOCAL else nodes.LOCAL
    assert nodes.Node("n", uri, 1, 1, images=other).image_mode == other


def test_nodes_file_images_key_is_stored_and_checked(tmp_path):
    nodes_file = tmp_path / "nodes.conf"
    nodes_file.write_text(
        "[near]\nuri = qemu:///system\nmemory = 1\nimages = upload\n[far]\nuri = qemu+ssh://far/system\nmemory = 1\n"
    )
    store, pool = open_pool(tmp_path / "state", PoolConfig(nodes_file=nodes_file))
    with store.reading() as db:
        listed = {node.name: node for node in nodes.list_nodes(db)}
    assert (listed["near"].images, listed["near"].image_mode) == ("upload", nodes.UPLOAD)
    assert (listed["far"].images, listed["far"].image_mode) == (None, nodes.UPLOAD)
    pool.close()
    nodes_file.write_text("[near]\nuri = qemu:///system\nmemory = 1\nimages = rsync\n")
    with pytest.raises(nodes.NodesFileError, match="local or upload"):
        nodes.read_nodes_file(nodes_file)


def test_bad_nodes_file_is_refused(tmp_path):
    bad = tmp_path / "nodes.conf"
    bad.write_text("[x]\nuri = test:///default\nmemory = lots\n")
    with pytest.raises(nodes.NodesFileError, match=r"\[x\]"):
        nodes.read_nodes_file(bad)
    bad.write_text("[x]\nuri = test:///default\nmemory = 1\ncolour = blue\n")
    with pytest.raises(nodes.NodesFileError, match="colour"):
        nodes.read_nodes_file(bad)


def test_admin_functions_add_update_remove(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    with store.transaction() as db:
        added = nodes.add_node(db, "n2", "qemu+ssh://root@n2/system", 7680, 8, ["public"])
        assert nodes.get_node(db, "n2") == added
        with pytest.raises(nodes.NodeExists):
            nodes.add_node(db, "n2", "qemu:///system", 1, 1)
        with pytest.raises(InvalidMetadata):
            nodes.add_node(db, "bad name", "qemu:///system", 1, 1)
        assert not nodes.update_node(db, "n2", active=False).active
        assert nodes.update_node(db, "n2", images=nodes.LOCAL).image_mode == nodes.LOCAL
        assert nodes.get_node(db, "n2").images == nodes.LOCAL and not nodes.get_node(db, "n2").active
        with pytest.raises(nodes.UnknownNode):
            nodes.update_node(db, "nope", memory_mb=1)
    placed = reserve(store, pool, MachineRequest(memory_mb=1024, vcpus=2))[0]
    with store.transaction() as db:
        with pytest.raises(nodes.NodeBusy):
            nodes.update_node(db, "node1", memory_mb=512)
        with pytest.raises(nodes.NodeBusy):
            nodes.remove_node(db, "node1")
        assert nodes.remove_node(db, "n2").name == "n2"
    destroy(store, pool, placed)
    with store.transaction() as db:
        nodes.remove_node(db, "node1")
        assert nodes.list_nodes(db) == []


def test_an_unreachable_node_is_reported_and_marked_unavailable(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, SMALL)[0]
    pool.define(placed, SMALL)
    with store.transaction() as db:
        nodes.update_node(db, "node1", uri="qemu+tcp://127.0.0.1:1/system")  # nothing listens there
    pool._driver("node1")._conn.close()
    assert pool.domain_states() == {("node1", placed.domain): UNREACHABLE}
    with store.reading() as db:
        assert not nodes.get_node(db, "node1").available
    with store.transaction() as db:
        nodes.update_node(
            db, "node1", uri="test://" + str((tmp_path / "state" / "nodes" / "node1" / "node.xml").resolve())
        )
    assert pool.domain_states() == {("node1", placed.domain): "shutoff"}
    with store.reading() as db:
        assert nodes.get_node(db, "node1").available


# ---- contextualization drive ----------------------------------------------------------------


def isoinfo(iso: Path, path: str) -> str:
    return subprocess.run(["isoinfo", "-R", "-x", path, "-i", str(iso)], capture_output=True, text=True).stdout


def test_context_iso_when_enabled_holds_hostname_network_files_and_userdata(tmp_path):
    store, pool = open_pool(tmp_path / "state", PoolConfig(test_node_context_iso=True))
    machine = MachineRequest(
        memory_mb=64,
        root=DiskRequest("file://ttylinux-xen", "sda1"),
        nics=(NicRequest("eth0", "public"),),
        files=(ContextFile("/root/.ssh/authorized_keys", "ssh-rsa AAAA user@host\n"),),
        userdata="#!/bin/sh\necho hi\n",
    )
    placed = reserve(store, pool, machine)[0]
    pool.define(placed, machine)
    iso = tmp_path / "state" / "nodes" / "node1" / "domains" / placed.domain / "context.iso"
    lease = placed.leases[0]
    assert isoinfo(iso, "/vws/hostname") == "pub01\n"
    assert isoinfo(iso, "/vws/network") == (
        f"eth0 192.168.128.10 255.255.255.0 192.168.128.1 {lease.mac} pub01 192.168.128.1 192.168.128.255 public\n"
    )
    assert isoinfo(iso, "/vws/disks") == "sda1 vda\n"
    assert isoinfo(iso, "/vws/files/root/.ssh/authorized_keys") == "ssh-rsa AAAA user@host\n"
    assert isoinfo(iso, "/vws/user-data") == "#!/bin/sh\necho hi\n"
    domain = etree.fromstring(pool._driver("node1").xml(placed.domain).encode())
    (disk,) = domain.xpath("devices/disk[target/@dev='vdb']")
    assert disk.find("source").get("file") == str(iso) and disk.find("readonly") is not None


def test_context_drive_is_skipped_on_test_nodes_by_default_and_without_nics_or_files(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, WITH_NIC)[0]
    pool.define(placed, WITH_NIC)
    assert not (tmp_path / "state" / "nodes" / "node1" / "domains" / placed.domain / "context").exists()
    assert not context_drive.needed(SMALL) and context_drive.needed(WITH_NIC)


@pytest.mark.parametrize("path", ["../etc/passwd", "/", "a/../../b"])
def test_context_file_paths_may_not_escape(path):
    with pytest.raises(InvalidMetadata):
        context_drive.layout(MachineRequest(memory_mb=1, files=(ContextFile(path, "x"),)), [], [], "h")


def test_kernel_boot_uses_repository_files(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    (pool.repository.root / "vmlinuz").write_bytes(b"k")
    (pool.repository.root / "initrd.gz").write_bytes(b"i")
    machine = MachineRequest(memory_mb=64, kernel=KernelRequest("file://vmlinuz", "file://initrd.gz", "console=ttyS0"))
    placed = reserve(store, pool, machine)[0]
    pool.define(placed, machine)
    os_element = etree.fromstring(pool._driver("node1").xml(placed.domain).encode()).find("os")
    assert os_element.findtext("kernel") == str(pool.repository.root / "vmlinuz")
    assert os_element.findtext("initrd") == str(pool.repository.root / "initrd.gz")
    assert os_element.findtext("cmdline") == "console=ttyS0"


def test_services_with_different_domain_prefixes_share_a_node_apart(tmp_path):
    nodes_file = tmp_path / "nodes.conf"
    nodes_file.write_text("[shared]\nuri = test:///default\nmemory = 4096\ncpus = 4\n")  # one libvirt for all
    pools = {
        prefix: open_pool(tmp_path / prefix, PoolConfig(nodes_file=nodes_file, domain_prefix=prefix))
        for prefix in ("alpha-", "beta-")
    }
    placed = {prefix: reserve(store, pool, SMALL)[0] for prefix, (store, pool) in pools.items()}
    try:
        for prefix, (_, pool) in pools.items():
            pool.define(placed[prefix], SMALL)  # both are workspace 1 of their own service
        for prefix, (_, pool) in pools.items():
            assert pool.domain_states() == {("shared", f"{prefix}1"): "shutoff"}
    finally:
        for prefix, (store, pool) in pools.items():
            destroy(store, pool, placed[prefix])
    assert all(pool.domain_states() == {} for _, pool in pools.values())
