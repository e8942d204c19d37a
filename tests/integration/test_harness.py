"""The harness's own logic, without libvirtd or a guest: fast, and runs anywhere."""

import threading
import time
from pathlib import Path

import pytest

from tests.integration import guest, libvirtd
from tests.integration.console import ConsoleFailure, ConsoleTimeout, console_lines, wait_for_line
from tests.integration.context_iso import Nic

MODULES_DEP = """\
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/cdrom/cdrom.ko:
kernel/drivers/net/virtio-net.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
"""


def test_load_order_puts_dependencies_first_once() -> None:
    order = guest.load_order(MODULES_DEP, [], ["virtio_pci", "virtio_blk", "isofs", "virtio_net"])
    names = [Path(path).name for path in order]
    assert names == [
        "virtio_pci_modern_dev.ko",
        "virtio_pci_legacy_dev.ko",
        "virtio_ring.ko",
        "virtio.ko",
        "virtio_pci.ko",
        "virtio_blk.ko",
        "cdrom.ko",
        "isofs.ko",
        "virtio-net.ko.xz",
    ]


def test_load_order_skips_built_in_modules_and_names_missing_ones() -> None:
    assert guest.load_order(MODULES_DEP, ["kernel/fs/isofs/isofs.ko"], ["isofs"]) == []
    with pytest.raises(LookupError, match="virtio_scsi"):
        guest.load_order(MODULES_DEP, [], ["virtio_scsi"])


def test_kernel_package_comes_from_the_metapackage_depends() -> None:
    show = "Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n"
    assert guest.parse_kernel_depends(show) == guest.KernelPackage("linux-image-6.1.0-56-amd64", "6.1.192-2")
    with pytest.raises(LookupError):
        guest.parse_kernel_depends("Package: linux-image-amd64\n")


def test_nic_line_fills_absent_fields_with_none() -> None:
    assert (
        Nic("eth0", "192.0.2.7", mac="52:54:00:00:00:01").line()
        == "eth0 192.0.2.7 none none 52:54:00:00:00:01 none none\n"
    )


def test_qemu_conf_gets_only_missing_settings_once_with_a_backup(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    original = '#user = "qemu"\ngroup = "kvm"\n'
    conf.write_text(original)
    libvirtd.configure_qemu(conf)
    libvirtd.configure_qemu(conf)
    text = conf.read_text()
    assert text.startswith(original) and text.count(libvirtd.BLOCK_BEGIN) == 1
    assert 'user = "root"' in text and 'group = "root"' not in text  # an existing setting wins
    assert (tmp_path / "qemu.conf.vws-orig").read_text() == original


def test_wait_for_line_follows_a_growing_file(tmp_path: Path) -> None:
    console = tmp_path / "console.log"

    def write_later() -> None:
        time.sleep(0.1)
        with open(console, "ab") as log:
            log.write(b"noise\r\nVWS-GUEST-BOO")
            log.flush()
            time.sleep(0.1)
            log.write(b"TED\r\n")

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        assert wait_for_line(console, "^VWS-GUEST-BOOTED$", 5) == "VWS-GUEST-BOOTED"
    finally:
        writer.join()
    assert console_lines(console) == ["noise", "VWS-GUEST-BOOTED"]


def test_wait_for_line_times_out_with_the_tail(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_bytes(b"first\r\nlast words")
    with pytest.raises(ConsoleTimeout, match="(?s)never.*first\nlast words"):
        wait_for_line(console, "never", 0.2)


def test_wait_for_line_stops_at_a_failure_line(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_bytes(b"Kernel panic - not syncing: No working init found.\n")
    started = time.monotonic()
    with pytest.raises(ConsoleFailure, match="Kernel panic"):
        wait_for_line(console, "VWS-GUEST-BOOTED", 30)
    assert time.monotonic() - started < 5
