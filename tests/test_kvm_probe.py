"""The kvm probe without a hypervisor: its kernel is its assembly source, and nodes that offer
no kvm are never probed. tests/integration/test_kvm_probe.py runs it on the real libvirtd."""

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from tests.test_pool_helpers import SMALL, open_pool, reserve
from vws.config import PoolConfig
from vws.pool import kvm_probe

SOURCE = Path(kvm_probe.__file__).with_suffix(".S")


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("ld")), reason="needs binutils (as, ld)")
def test_the_probe_kernel_is_its_source_assembled(tmp_path):
    obj, binary = tmp_path / "probe.o", tmp_path / "probe.bin"
    subprocess.run(["as", "--64", "-o", obj, SOURCE], check=True)
    link = ["ld", "-m", "elf_x86_64", "-Ttext=0x100000", "-e", "0x100000", "--oformat", "binary", "-o", binary, obj]
    subprocess.run(link, check=True)
    assert binary.read_bytes() == kvm_probe.PROBE_KERNEL


def test_the_probe_kernel_carries_a_valid_multiboot_header():
    magic, flags, checksum = (int.from_bytes(kvm_probe.PROBE_KERNEL[i : i + 4], "little") for i in (0, 4, 8))
    assert magic == 0x1BADB002 and (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert kvm_probe.STARTED in kvm_probe.PROBE_KERNEL and kvm_probe.DONE in kvm_probe.PROBE_KERNEL


def test_a_node_that_offers_no_kvm_is_not_probed(tmp_path):
    store, pool = open_pool(tmp_path / "state", PoolConfig(virt_type="auto"))
    verdict = kvm_probe.probe(pool._driver("node1"), tmp_path / "never-read")
    assert verdict == kvm_probe.Verdict(False, "its capabilities offer no kvm")
    placed = reserve(store, pool, SMALL)[0]
    pool.define(placed, SMALL)
    assert etree.fromstring(pool._driver("node1").xml(placed.domain)).get("type") == "test"
    assert not (tmp_path / "state" / "kvm-probe.bin").exists()  # no probe, no probe kernel


def test_the_probe_domain_boots_the_kernel_with_a_console_to_read(tmp_path):
    domain = etree.fromstring(kvm_probe.domain_xml("kvm", tmp_path / "probe.bin"))
    assert domain.get("type") == "kvm" and domain.findtext("os/kernel") == str(tmp_path / "probe.bin")
    assert domain.find("devices/disk") is None and domain.find("devices/serial").get("type") == "pty"
