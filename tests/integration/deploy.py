"""The test guest deployed through the GT4 SOAP API: the request, and what tests read back.

The metadata names the guest's kernel, initrd and ``file://`` root in the service's image
repository, one NIC in the ``public`` network pool, a filewrite and user data; the guest
reports on its serial console what it read from the context drive (``guest_init.sh``).
"""

import hashlib
import json
import os
import time
from contextlib import suppress
from pathlib import Path

import libvirt
from lxml import etree

from tests.gt4wire import FACTORY_ACTION, Gt4Client, create_body
from tests.integration import guest
from tests.integration.console import console_lines
from tests.integration.proc import run
from vws.wsrf.addressing import EndpointReference
from vws.xmlns import TYPES, WORKSPACE, qname

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


def create(gt4: Gt4Client, root: str = "base.qcow2") -> etree._Element:
    """The factory create of the test guest, ``root`` its root disk in the repository (a client
    with ``settle`` returns once it runs)."""
    metadata = METADATA.format(pool=POOL, kernel="vmlinuz", initrd="initrd.img", base=root, cmdline=guest.CMDLINE)
    body = create_body(etree.fromstring(metadata), etree.fromstring(REQUEST))
    optional = etree.SubElement(body, qname(TYPES, "optionalParameters"))
    filewrite = etree.SubElement(optional, qname(TYPES, "filewrite"))
    etree.SubElement(filewrite, qname(TYPES, "content")).text = KEY
    etree.SubElement(filewrite, qname(TYPES, "pathOnVM")).text = KEY_PATH
    etree.SubElement(optional, qname(TYPES, "mdServerUserdata")).text = USERDATA
    return gt4.call(gt4.factory(), FACTORY_ACTION + "createRequest", body)


# Each test run names its domains apart, so runs sharing the system libvirtd (worktrees, CI
# beside a developer) never adopt or remove each other's guests.
DOMAIN_PREFIX = f"vwst{os.getpid()}-"


def domain_name(epr: EndpointReference) -> str:
    return f"{DOMAIN_PREFIX}{epr.key(qname(WORKSPACE, 'WorkspaceKey'))}"


def assert_contextualized(console: Path, hostname: str, ip: str) -> None:
    """The guest applied the context drive of ``create`` and read its root through the base."""
    lines = console_lines(console)
    assert f"{guest.CTX} hostname={hostname}" in lines
    assert f"{guest.CTX} ip={ip}" in lines
    assert f"{guest.CTX} file={KEY_PATH} sha256={hashlib.sha256(KEY.encode()).hexdigest()}" in lines
    assert f"{guest.CTX} userdata-bytes={len(USERDATA.encode())}" in lines
    assert "VWS-ROOT dev=/dev/vda head=VWS-BASE-IMAGE" in lines  # the overlay reads through its base


def console_path(domain: libvirt.virDomain) -> Path:
    xml = etree.fromstring(domain.XMLDesc(0).encode())
    (path,) = xml.xpath("devices/serial[@type='file']/source/@path")
    return Path(path)


def disk_sources(domain: libvirt.virDomain) -> list[Path]:
    xml = etree.fromstring(domain.XMLDesc(0).encode())
    return [Path(path) for path in xml.xpath("devices/disk/source/@file")]


def backing(overlay: Path) -> Path | None:
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", overlay]))
    backing_file = info.get("full-backing-filename")
    return None if backing_file is None else Path(backing_file)


def at_marker(qcow2: Path, scratch: Path, hostname: str) -> bytes:
    """The bytes where the guest writes its marker, as the guest sees the disk."""
    raw = scratch / f"{qcow2.name}.raw"
    run(["qemu-img", "convert", "-U", "-O", "raw", qcow2, raw])
    with open(raw, "rb") as disk:
        disk.seek(guest.MARKER_OFFSET)
        return disk.read(len(guest.marker(hostname)))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_until_gone(connection: libvirt.virConnect, name: str) -> None:
    # Destroy may finish after its reply; libvirt has no "undefined" wait: poll, bounded.
    deadline = time.monotonic() + DESTROY_TIMEOUT
    while name in _domain_names(connection):
        assert time.monotonic() < deadline, f"{name} still defined {DESTROY_TIMEOUT:.0f} s after Destroy"
        time.sleep(0.1)


def _domain_names(connection: libvirt.virConnect) -> set[str]:
    return {domain.name() for domain in connection.listAllDomains(0)}


def remove_domains(uri: str, names: list[str]) -> None:
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
