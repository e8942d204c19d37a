"""Domain XML objects and the designer: what a request becomes, valid per libvirt's schema."""

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from vws.config import ConfigError
from vws.pool.designer import (
    KVM,
    QEMU,
    TEST,
    KernelFiles,
    NodeFacts,
    design,
    disk_target,
    domain_name,
    domain_prefix,
    virt_type,
)
from vws.pool.domain_xml import DiskSpec, owner_of
from vws.pool.machine import MachineRequest, NetworkLease, Placement

LEASES = (
    NetworkLease(nic="eth0", pool="public", ip="192.168.128.10", hostname="pub01", mac="a2:aa:bb:00:00:01"),
    NetworkLease(nic="eth1", pool="private", ip="10.0.0.5", hostname="priv05", mac="a2:aa:bb:00:00:02"),
)
PLACEMENT = Placement(12, "n1", domain_name("wrksp-", 12), LEASES)
DISKS = (
    DiskSpec(Path("/var/lib/vws/root.qcow2"), "vda"),
    DiskSpec(Path("/var/lib/vws/ro.raw"), "vdb", "raw", readonly=True, shareable=True),
)


def render(node: NodeFacts, **kwargs) -> etree._Element:
    spec = design(MachineRequest(memory_mb=512, vcpus=2, architecture="x86"), PLACEMENT, node, DISKS, **kwargs)
    return etree.fromstring(spec.to_xml())


def test_disk_targets_and_names():
    assert [disk_target(i) for i in (0, 1, 25, 26, 27)] == ["vda", "vdb", "vdz", "vdaa", "vdab"]
    assert domain_name("wrksp-", 7) == "wrksp-7"


@pytest.mark.parametrize("prefix", ["", "vws1", "a/b-", "x y-", "é-"])
def test_a_domain_prefix_must_split_from_the_id_one_way(prefix):
    with pytest.raises(ConfigError, match="domain_prefix"):
        domain_prefix(prefix)
    assert domain_prefix("site_b.vws-") == "site_b.vws-"


def test_domain_type_per_node():
    assert virt_type(NodeFacts("t", frozenset({TEST})), QEMU) == TEST
    assert virt_type(NodeFacts("q", frozenset({QEMU, KVM})), QEMU) == QEMU
    assert virt_type(NodeFacts("q", frozenset({QEMU, KVM})), "auto") == KVM
    assert virt_type(NodeFacts("q", frozenset({QEMU})), "auto") == QEMU


def test_qemu_domain_has_virtio_disks_bridged_or_user_nics_acpi_and_arch():
    domain = render(NodeFacts("n1", frozenset({QEMU}), {"public": "br0"}), wanted_type=QEMU, console_log=Path("/c.log"))
    assert domain.get("type") == "qemu"
    assert domain.find("os/type").get("arch") == "i686"
    assert domain.find("features/acpi") is not None
    assert [d.find("target").get("bus") for d in domain.iterfind("devices/disk")] == ["virtio", "virtio"]
    public, private = domain.iterfind("devices/interface")
    assert (public.get("type"), public.find("source").get("bridge"), public.find("mac").get("address")) == (
        "bridge", "br0", "a2:aa:bb:00:00:01",
    )  # fmt: skip
    assert private.get("type") == "user" and private.find("source") is None
    assert domain.find("devices/serial").get("type") == "file"
    assert domain.find("memory").text == "512" and domain.find("memory").get("unit") == "MiB"
    assert owner_of(etree.tostring(domain.find("metadata")[0])) == 12


def test_test_domain_uses_plain_network_interfaces_and_no_arch():
    domain = render(NodeFacts("n1", frozenset({TEST})))
    assert domain.get("type") == "test" and domain.find("os/type").get("arch") is None
    assert {nic.get("type") for nic in domain.iterfind("devices/interface")} == {"network"}


def test_kernel_boot_replaces_boot_from_disk():
    domain = render(NodeFacts("n1", frozenset({QEMU})), kernel=KernelFiles(Path("/k"), Path("/i"), "console=ttyS0"))
    assert [child.tag for child in domain.find("os")] == ["type", "kernel", "initrd", "cmdline"]


def test_owner_of_ignores_foreign_metadata():
    assert owner_of('<other id="3"/>') is None
    assert owner_of('<workspace id="x"/>') is None
    assert owner_of('<workspace id="3"/>') == 3


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate not installed")
@pytest.mark.parametrize("kind", [QEMU, KVM])
def test_rendered_xml_is_valid_per_libvirts_schema(tmp_path, kind):
    domain = render(
        NodeFacts("n1", frozenset({QEMU, KVM}), {"public": "br0"}),
        wanted_type=kind,
        kernel=KernelFiles(Path("/k"), None, "quiet"),
        console_log=Path("/var/log/c.log"),
    )
    path = tmp_path / "domain.xml"
    path.write_bytes(etree.tostring(domain))
    result = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
