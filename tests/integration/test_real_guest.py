"""Issue #4 acceptance: a real guest deployed through the GT4 SOAP API onto a libvirt node.

The service runs with one node, ``qemu:///system`` (TCG), an image repository holding the
test guest's kernel, initrd and base disk, and a ``public`` network pool of two addresses.
A factory ``create`` (metadata naming the kernel, the initrd and a ``file://`` root, one NIC
in ``public``, a filewrite and user data) must give a guest that boots, reads the context
drive the pool wrote (hostname and IP as the create response announced them, the file with
its sha256, the user data) and writes to its own overlay only. ``Destroy`` must take the
domain out of libvirt, delete its overlay and free its address for the next deploy.
"""

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.conftest import make_config
from tests.deployments import settler
from tests.gt4wire import FACTORY_ACTION, Gt4Client, create_body, created_eprs
from tests.integration import guest
from tests.integration.console import console_lines, wait_for_line
from tests.integration.proc import run
from vws.service import Service
from vws.xmlns import LOGISTICS, TYPES, WORKSPACE, qname

NODE = "libvirt1"
POOL = "public"
# TEST-NET-1 documentation addresses: the guest has a user-mode NIC and uses none of them.
POOL_TEXT = """\
192.0.2.53
vws-real-1 192.0.2.11 192.0.2.1 192.0.2.255 255.255.255.0
vws-real-2 192.0.2.12 192.0.2.1 192.0.2.255 255.255.255.0
"""
KEY_PATH = "/root/.ssh/authorized_keys"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVWSREAL vws@issue4\n"
USERDATA = "#!/bin/sh\necho issue 4 user data\n"
MEMORY_MB = 128
BOOT_TIMEOUT = 60.0  # ~5 s under TCG when idle; busy CI machines are slower
DESTROY_TIMEOUT = 30.0

METADATA = """\
<VirtualWorkspace xmlns="http://www.globus.org/2008/06/workspace/metadata"
                  xmlns:def="http://www.globus.org/2008/06/workspace/metadata/definition"
                  xmlns:log="http://www.globus.org/2008/06/workspace/metadata/logistics"
                  xmlns:jsdl="http://schemas.ggf.org/jsdl/2005/11/jsdl">
  <name>http://vws.example.org/tests/issue4-real-guest</name>
  <log:logistics>
    <log:networking>
      <log:nic>
        <log:name>eth0</log:name>
        <log:ipConfig>
          <log:acquisitionMethod>AllocateAndConfigure</log:acquisitionMethod>
        </log:ipConfig>
        <log:association>{pool}</log:association>
      </log:nic>
    </log:networking>
  </log:logistics>
  <def:definition>
    <def:requirements>
      <jsdl:CPUArchitecture>
        <jsdl:CPUArchitectureName>x86_64</jsdl:CPUArchitectureName>
      </jsdl:CPUArchitecture>
      <def:kernel>
        <def:image>file://{kernel}</def:image>
        <def:parameters>{cmdline}</def:parameters>
        <def:initrd>file://{initrd}</def:initrd>
      </def:kernel>
    </def:requirements>
    <def:diskCollection>
      <def:rootVBD>
        <def:location>file://{base}</def:location>
        <def:mountAs>sda1</def:mountAs>
        <def:permissions>ReadWrite</def:permissions>
      </def:rootVBD>
    </def:diskCollection>
  </def:definition>
</VirtualWorkspace>
"""

REQUEST = f"""\
<WorkspaceDeployment xmlns="http://www.globus.org/2008/06/workspace/negotiable"
                     xmlns:jsdl="http://schemas.ggf.org/jsdl/2005/11/jsdl">
  <DeploymentTime><minDuration>PT30M</minDuration></DeploymentTime>
  <InitialState>Running</InitialState>
  <ResourceAllocation>
    <jsdl:IndividualCPUCount><jsdl:Exact>1</jsdl:Exact></jsdl:IndividualCPUCount>
    <jsdl:IndividualPhysicalMemory><jsdl:Exact>{MEMORY_MB}</jsdl:Exact></jsdl:IndividualPhysicalMemory>
  </ResourceAllocation>
  <NodeNumber>1</NodeNumber>
</WorkspaceDeployment>
"""


@pytest.fixture
def repository(guest_image: guest.GuestImage, tmp_path: Path) -> Path:
    """The guest's three files in an image repository of their own (file:// names resolve
    inside it, and the service may not read files elsewhere)."""
    root = tmp_path / "images"
    root.mkdir()
    for source in (guest_image.kernel, guest_image.initrd, guest_image.base):
        shutil.copyfile(source, root / source.name)
    return root


@pytest.fixture
def service(libvirt_uri: str, repository: Path, tmp_path: Path) -> Iterator[Service]:
    nodes_file = tmp_path / "nodes.conf"
    # Room for one guest and a half: the second deploy fits only once the first is gone.
    nodes_file.write_text(
        f"[{NODE}]\nuri = {libvirt_uri}\nmemory = {MEMORY_MB + MEMORY_MB // 2}\ncpus = 1\nnetworks = {POOL}\n"
    )
    pools = tmp_path / "network-pools"
    pools.mkdir()
    (pools / POOL).write_text(POOL_TEXT)
    config = make_config(tmp_path / "state").with_overrides(
        "pool",
        nodes_file=nodes_file,
        network_pools_dir=pools,
        image_repository=repository,
        virt_type="qemu",
        shutdown_wait_seconds=5,
    )
    running = Service(config)
    running.start()
    try:
        yield running
    finally:
        with running.store.reading() as db:
            leftovers = [row[0] for row in db.execute("select domain from pool_domains")]
        running.stop()
        _remove_domains(libvirt_uri, leftovers)


@pytest.fixture
def gt4(service: Service) -> Iterator[Gt4Client]:
    client = Gt4Client(service.base_url, settle=settler(service))
    yield client
    client.close()


def test_deploy_boots_a_contextualized_guest_and_destroy_frees_everything(
    service: Service,
    gt4: Gt4Client,
    connection: libvirt.virConnect,
    repository: Path,
    tmp_path: Path,
    record_property,
) -> None:
    base_digest = _sha256(repository / "base.qcow2")

    started = time.monotonic()
    response = _create(gt4)
    record_property("create_seconds", round(time.monotonic() - started, 2))
    (epr,) = created_eprs(response)
    ip = response.findtext(f".//{{{LOGISTICS}}}ipAddress")
    hostname = response.findtext(f".//{{{LOGISTICS}}}hostname")
    assert (ip, hostname) == ("192.0.2.11", "vws-real-1")
    assert gt4.state(epr) == "Running"

    name = f"wrksp-{epr.key(qname(WORKSPACE, 'WorkspaceKey'))}"
    domain = connection.lookupByName(name)
    assert domain.isActive()
    console = _console_path(domain)
    overlay = _disk_sources(domain)[0]
    assert overlay.name == "root.qcow2" and overlay.parent == console.parent

    wait_for_line(console, f"^{guest.BOOTED}$", BOOT_TIMEOUT)
    record_property("boot_seconds", round(time.monotonic() - started, 2))
    wait_for_line(console, f"^{guest.WROTE}$", 30)
    lines = console_lines(console)
    assert f"{guest.CTX} hostname={hostname}" in lines
    assert f"{guest.CTX} ip={ip}" in lines
    assert f"{guest.CTX} file={KEY_PATH} sha256={hashlib.sha256(KEY.encode()).hexdigest()}" in lines
    assert f"{guest.CTX} userdata-bytes={len(USERDATA.encode())}" in lines
    assert "VWS-ROOT dev=/dev/vda head=VWS-BASE-IMAGE" in lines  # the overlay reads through its base

    # The guest synced its write: read the overlay while qemu holds it (-U: shared, read-only).
    assert _at_marker(overlay, tmp_path, hostname) == guest.marker(hostname)
    backing = _backing(overlay)  # the node cache's copy of the repository base
    assert backing.parent.name == "cache"
    assert _at_marker(backing, tmp_path, hostname) != guest.marker(hostname)

    started = time.monotonic()
    gt4.destroy(epr)
    _wait_until_gone(connection, name)
    record_property("destroy_seconds", round(time.monotonic() - started, 2))
    assert not overlay.exists() and not console.parent.exists()
    assert _sha256(repository / "base.qcow2") == base_digest

    # The address went back to the pool: the next deploy gets the same first one.
    again = _create(gt4)
    assert again.findtext(f".//{{{LOGISTICS}}}ipAddress") == ip
    (second,) = created_eprs(again)
    gt4.destroy(second)
    _wait_until_gone(connection, f"wrksp-{second.key(qname(WORKSPACE, 'WorkspaceKey'))}")


def _create(gt4: Gt4Client) -> etree._Element:
    metadata = METADATA.format(
        pool=POOL, kernel="vmlinuz", initrd="initrd.img", base="base.qcow2", cmdline=guest.CMDLINE
    )
    body = create_body(etree.fromstring(metadata), etree.fromstring(REQUEST))
    optional = etree.SubElement(body, qname(TYPES, "optionalParameters"))
    filewrite = etree.SubElement(optional, qname(TYPES, "filewrite"))
    etree.SubElement(filewrite, qname(TYPES, "content")).text = KEY
    etree.SubElement(filewrite, qname(TYPES, "pathOnVM")).text = KEY_PATH
    etree.SubElement(optional, qname(TYPES, "mdServerUserdata")).text = USERDATA
    return gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", body)


def _console_path(domain: libvirt.virDomain) -> Path:
    xml = etree.fromstring(domain.XMLDesc(0).encode())
    (path,) = xml.xpath("devices/serial[@type='file']/source/@path")
    return Path(path)


def _disk_sources(domain: libvirt.virDomain) -> list[Path]:
    xml = etree.fromstring(domain.XMLDesc(0).encode())
    return [Path(path) for path in xml.xpath("devices/disk/source/@file")]


def _backing(overlay: Path) -> Path:
    info = run(["qemu-img", "info", "-U", "--output=json", overlay]).decode()
    return Path(json.loads(info)["full-backing-filename"])


def _at_marker(qcow2: Path, tmp_path: Path, hostname: str) -> bytes:
    """The bytes where the guest writes its marker, as the guest sees the disk."""
    raw = tmp_path / f"{qcow2.name}.raw"
    run(["qemu-img", "convert", "-U", "-O", "raw", qcow2, raw])
    with open(raw, "rb") as disk:
        disk.seek(guest.MARKER_OFFSET)
        return disk.read(len(guest.marker(hostname)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait_until_gone(connection: libvirt.virConnect, name: str) -> None:
    # Destroy may finish after its reply; libvirt has no "undefined" wait: poll, bounded.
    deadline = time.monotonic() + DESTROY_TIMEOUT
    while name in _domain_names(connection):
        assert time.monotonic() < deadline, f"{name} still defined {DESTROY_TIMEOUT:.0f} s after Destroy"
        time.sleep(0.1)


def _domain_names(connection: libvirt.virConnect) -> set[str]:
    return {domain.name() for domain in connection.listAllDomains(0)}


def _remove_domains(uri: str, names: list[str]) -> None:
    """A failed test must not leave its guests running on the shared libvirtd."""
    if not names:
        return
    connection = libvirt.open(uri)
    try:
        for name in names:
            with suppress(libvirt.libvirtError):
                domain = connection.lookupByName(name)
                with suppress(libvirt.libvirtError):
                    domain.destroy()
                domain.undefine()
    finally:
        connection.close()
