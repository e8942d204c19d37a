"""The kvm probe on the real libvirtd: its verdict must match what a stock Linux guest does.

Reality is the test guest (Debian's kernel and a busybox initramfs) reaching its BOOTED line
under ``type='kvm'`` within REAL_BOOT_TIMEOUT. Where KVM works, both say kvm; where
``/dev/kvm`` is PVM-backed (the machines vws is developed on), the kernel crawls through its
decompressor for minutes, the probe guest does not finish its work either, and both say qemu.
Then ``virt_type = auto`` must give the type the probe chose, and the guest must boot on it.
"""

import shutil
import time
import uuid
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from lxml import etree

from tests.integration import guest
from tests.integration.console import wait_for_line
from tests.test_pool_helpers import destroy, open_pool, reserve
from vws.clock import SystemClock
from vws.config import PoolConfig
from vws.pool import kvm_probe
from vws.pool.designer import KVM, QEMU
from vws.pool.driver import Driver
from vws.pool.machine import KernelRequest, MachineRequest

NODE = "libvirt1"
REAL_BOOT_TIMEOUT = 30.0  # KVM: about a second; TCG: about 5 s; a PVM-backed kvm: minutes
BOOT_TIMEOUT = 60.0


@pytest.fixture
def driver(libvirt_uri: str):
    opened = Driver(NODE, libvirt_uri, SystemClock())
    yield opened
    opened.close()


@pytest.fixture
def probe_kernel(tmp_path: Path) -> Path:
    path = tmp_path / "kvm-probe.bin"
    path.write_bytes(kvm_probe.PROBE_KERNEL)
    return path


def test_the_probe_guest_does_its_work_under_tcg(driver, probe_kernel, record_property):
    started = time.monotonic()
    console = driver.run_transient(kvm_probe.domain_xml(QEMU, probe_kernel), kvm_probe.DONE, 30)
    record_property("tcg_probe_seconds", round(time.monotonic() - started, 2))
    assert kvm_probe.STARTED in console and kvm_probe.DONE in console


def test_the_kvm_verdict_matches_whether_linux_boots_under_kvm(driver, probe_kernel, guest_image, record_property):
    started = time.monotonic()
    verdict = kvm_probe.probe(driver, probe_kernel)
    record_property("kvm_probe_seconds", round(time.monotonic() - started, 2))
    record_property("kvm_probe_verdict", verdict.reason)
    boots = KVM in driver.virt_types() and _boots(driver, KVM, guest_image, record_property)
    assert verdict.kvm == boots, verdict.reason


def test_auto_gives_the_probed_type_and_the_guest_boots_on_it(libvirt_uri, guest_image, tmp_path, record_property):
    repository = tmp_path / "images"
    repository.mkdir()
    shutil.copy(guest_image.kernel, repository / "vmlinuz")
    shutil.copy(guest_image.initrd, repository / "initrd.img")
    nodes_file = tmp_path / "nodes.conf"
    nodes_file.write_text(f"[{NODE}]\nuri = {libvirt_uri}\nmemory = 1024\ncpus = 1\n")
    config = PoolConfig(nodes_file=nodes_file, image_repository=repository, virt_type="auto")
    store, pool = open_pool(tmp_path / "state", config)
    machine = MachineRequest(memory_mb=128, kernel=KernelRequest("file://vmlinuz", "file://initrd.img", guest.CMDLINE))
    placed = reserve(store, pool, machine)[0]
    try:
        pool.define(placed, machine)
        kind = etree.fromstring(pool._driver(NODE).xml(placed.domain)).get("type")
        assert kind == (KVM if pool.virt_types.verdicts[(NODE, libvirt_uri)] else QEMU)  # the probe define ran
        started = time.monotonic()
        pool.start(placed.node, placed.domain)
        console = tmp_path / "state" / "nodes" / NODE / "domains" / placed.domain / "console.log"
        wait_for_line(console, f"^{guest.BOOTED}$", BOOT_TIMEOUT)
        record_property(f"{kind}_boot_seconds", round(time.monotonic() - started, 2))
    finally:
        destroy(store, pool, placed)
        pool.close()


def _boots(driver: Driver, kind: str, image: guest.GuestImage, record_property) -> bool:
    """Whether the test guest's kernel reaches BOOTED under ``kind`` in REAL_BOOT_TIMEOUT."""
    started = time.monotonic()
    console = driver.run_transient(_linux_xml(kind, image), guest.BOOTED.encode(), REAL_BOOT_TIMEOUT)
    record_property(f"linux_under_{kind}_seconds", round(time.monotonic() - started, 2))
    return guest.BOOTED.encode() in console


def _linux_xml(kind: str, image: guest.GuestImage) -> str:
    return (
        f"<domain type='{kind}'><name>vws-kvm-reality-{uuid.uuid4().hex[:8]}</name>"
        "<memory unit='MiB'>128</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64'>hvm</type><kernel>{escape(str(image.kernel))}</kernel>"
        f"<initrd>{escape(str(image.initrd))}</initrd><cmdline>{guest.CMDLINE}</cmdline></os>"
        "<features><acpi/></features>"
        "<devices><serial type='pty'><target port='0'/></serial>"
        "<console type='pty'><target type='serial' port='0'/></console></devices></domain>"
    )
