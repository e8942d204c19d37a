"""Issue #4 acceptance: a real guest deployed through the GT4 SOAP API onto a libvirt node.

The service (``conftest.service``) runs with one node, ``qemu:///system`` (TCG), an image
repository holding the test guest's kernel, initrd and base disk, and a ``public`` network
pool of two addresses. A factory ``create`` (``deploy.create``: the kernel, the initrd and a
``file://`` root, one NIC in ``public``, a filewrite and user data) must give a guest that
boots, reads the context drive the pool wrote (hostname and IP as the create response
announced them, the file with its sha256, the user data) and writes to its own overlay only.
``Destroy`` must take the domain out of libvirt, delete its overlay and free its address for
the next deploy.
"""

import time
from pathlib import Path

import libvirt

from tests.gt4wire import Gt4Client, created_eprs
from tests.integration import guest
from tests.integration.console import wait_for_line
from tests.integration.deploy import (
    BOOT_TIMEOUT,
    assert_contextualized,
    at_marker,
    backing,
    console_path,
    create,
    disk_sources,
    domain_name,
    sha256,
    wait_until_gone,
)
from vws.service import Service
from vws.xmlns import LOGISTICS


def test_deploy_boots_a_contextualized_guest_and_destroy_frees_everything(
    service: Service,
    gt4: Gt4Client,
    connection: libvirt.virConnect,
    repository: Path,
    tmp_path: Path,
    record_property,
) -> None:
    base_digest = sha256(repository / "base.qcow2")

    started = time.monotonic()
    response = create(gt4)
    record_property("create_seconds", round(time.monotonic() - started, 2))
    (epr,) = created_eprs(response)
    ip = response.findtext(f".//{{{LOGISTICS}}}ipAddress")
    hostname = response.findtext(f".//{{{LOGISTICS}}}hostname")
    assert (ip, hostname) == ("192.0.2.11", "vws-real-1")
    assert gt4.state(epr) == "Running"

    name = domain_name(epr)
    domain = connection.lookupByName(name)
    assert domain.isActive()
    console = console_path(domain)
    overlay = disk_sources(domain)[0]
    assert overlay.name == "root.qcow2" and overlay.parent == console.parent

    wait_for_line(console, f"^{guest.BOOTED}$", BOOT_TIMEOUT)
    record_property("boot_seconds", round(time.monotonic() - started, 2))
    wait_for_line(console, f"^{guest.WROTE}$", 30)
    assert_contextualized(console, hostname, ip)

    # The guest synced its write: read the overlay while qemu holds it (-U: shared, read-only).
    assert at_marker(overlay, tmp_path, hostname) == guest.marker(hostname)
    base = backing(overlay)  # the node cache's copy of the repository base
    assert base is not None and base.parent.name == "cache"
    assert at_marker(base, tmp_path, hostname) != guest.marker(hostname)

    started = time.monotonic()
    gt4.destroy(epr)
    wait_until_gone(connection, name)
    record_property("destroy_seconds", round(time.monotonic() - started, 2))
    assert not overlay.exists() and not console.parent.exists()
    assert sha256(repository / "base.qcow2") == base_digest

    # The address went back to the pool: the next deploy gets the same first one.
    again = create(gt4)
    assert again.findtext(f".//{{{LOGISTICS}}}ipAddress") == ip
    (second,) = created_eprs(again)
    gt4.destroy(second)
    wait_until_gone(connection, domain_name(second))
