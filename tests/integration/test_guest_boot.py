"""Smoke test of the harness alone, no vws code: a real TCG guest through libvirtd.

It boots the cached guest on a qcow2 overlay with a context drive, checks from the serial
console that it booted, applied its context and wrote to its root disk, and then that the
write landed in the overlay and not in the base.
"""

import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt

from tests.integration import guest
from tests.integration.console import console_lines, wait_for_line
from tests.integration.context_iso import Nic, make_context_iso
from tests.integration.proc import run

HOSTNAME = "vws-smoke"
# TEST-NET-1 documentation addresses: written to the drive only, the guest has no NIC.
NIC = Nic("eth0", "192.0.2.10", "255.255.255.0", "192.0.2.1", "52:54:00:00:02:0a", HOSTNAME, "192.0.2.53")
FILES = {"/root/.ssh/authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVWS vws@test\n"}
USERDATA = "#!/bin/sh\necho user data\n"
BOOT_TIMEOUT = 60.0  # ~5 s under TCG when idle; CI machines may be busy


def test_guest_boots_reads_context_and_writes_only_its_overlay(
    connection: libvirt.virConnect, guest_image: guest.GuestImage, tmp_path: Path, record_property
) -> None:
    overlay = _overlay(guest_image.base, tmp_path / "overlay.qcow2")
    iso = make_context_iso(tmp_path / "context.iso", HOSTNAME, [NIC], FILES, USERDATA)
    console = tmp_path / "console.log"
    xml = _domain_xml(f"vws-smoke-{uuid.uuid4().hex[:8]}", guest_image, overlay, iso, console)

    with _transient(connection, xml) as domain:
        started = time.monotonic()
        wait_for_line(console, f"^{guest.BOOTED}$", BOOT_TIMEOUT)
        record_property("boot_seconds", round(time.monotonic() - started, 2))
        wait_for_line(console, f"^{guest.WROTE}$", 30)
        lines = console_lines(console)
        started = time.monotonic()
        domain.destroy()
        record_property("destroy_seconds", round(time.monotonic() - started, 2))

    assert f"{guest.CTX} hostname={HOSTNAME}" in lines
    assert f"{guest.CTX} ip={NIC.ip}" in lines
    for path, content in FILES.items():
        assert f"{guest.CTX} file={path} sha256={hashlib.sha256(content.encode()).hexdigest()}" in lines
    assert f"{guest.CTX} userdata-bytes={len(USERDATA.encode())}" in lines
    assert "VWS-ROOT dev=/dev/vda head=VWS-BASE-IMAGE" in lines  # the overlay reads through
    assert _at_marker(overlay, tmp_path) == guest.marker(HOSTNAME)
    assert _at_marker(guest_image.base, tmp_path) != guest.marker(HOSTNAME)


def _overlay(base: Path, path: Path) -> Path:
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", path])
    return path


def _at_marker(qcow2: Path, tmp_path: Path) -> bytes:
    """The bytes where the guest writes its marker, as the guest sees the disk."""
    raw = tmp_path / f"{qcow2.stem}.raw"
    run(["qemu-img", "convert", "-O", "raw", qcow2, raw])
    with open(raw, "rb") as disk:
        disk.seek(guest.MARKER_OFFSET)
        return disk.read(len(guest.marker(HOSTNAME)))


@contextmanager
def _transient(connection: libvirt.virConnect, xml: str) -> Iterator[libvirt.virDomain]:
    """A running transient domain, destroyed on the way out whatever happened."""
    domain = connection.createXML(xml, 0)
    try:
        yield domain
    finally:
        with suppress(libvirt.libvirtError):  # already destroyed by the test
            domain.destroy()


def _xml_text(path: Path) -> str:
    return escape(str(path), {"'": "&apos;"})


def _domain_xml(name: str, image: guest.GuestImage, overlay: Path, iso: Path, console: Path) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{_xml_text(image.kernel)}</kernel>
    <initrd>{_xml_text(image.initrd)}</initrd>
    <cmdline>{guest.CMDLINE}</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{_xml_text(overlay)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{_xml_text(iso)}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <serial type='file'>
      <source path='{_xml_text(console)}'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>"""
