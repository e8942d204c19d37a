"""libvirt domain XML as small config objects, each with ``to_xml()``.

These objects only turn fields into XML (and read back the one field vws needs, the
owner in ``<metadata>``); what goes into the fields is decided by ``designer.py``.
The ``<metadata>`` element in the vws namespace is how vws recognises its own domains
on a node that other tools also use.
"""

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

VWS_NS = "urn:vws:libvirt:domain:1"
OWNER_TAG = f"{{{VWS_NS}}}workspace"


@dataclass(frozen=True)
class DiskSpec:
    path: Path
    target: str  # vda, vdb, ...
    format: str = "qcow2"  # or raw
    readonly: bool = False
    shareable: bool = False  # the same file attached to several domains (read-only partitions)

    def to_xml(self) -> etree._Element:
        disk = etree.Element("disk", type="file", device="disk")
        etree.SubElement(disk, "driver", name="qemu", type=self.format)
        etree.SubElement(disk, "source", file=str(self.path))
        etree.SubElement(disk, "target", dev=self.target, bus="virtio")
        if self.readonly:
            etree.SubElement(disk, "readonly")
        if self.shareable:
            etree.SubElement(disk, "shareable")
        return disk


@dataclass(frozen=True)
class RateSpec:
    """One direction of ``<bandwidth>``: KiB/s average and peak, KiB burst."""

    average: int
    peak: int | None = None
    burst: int | None = None

    def to_xml(self, direction: str) -> etree._Element:
        attributes = {"average": self.average, "peak": self.peak, "burst": self.burst}
        return etree.Element(direction, {name: str(value) for name, value in attributes.items() if value is not None})


@dataclass(frozen=True)
class NicSpec:
    mac: str
    kind: str = "network"  # network | bridge | user
    source: str | None = "default"  # network or bridge name; None for user networking
    model: str | None = "virtio"
    inbound: RateSpec | None = None
    outbound: RateSpec | None = None

    def to_xml(self) -> etree._Element:
        nic = etree.Element("interface", type=self.kind)
        etree.SubElement(nic, "mac", address=self.mac)
        if self.source is not None:
            etree.SubElement(nic, "source", **{self.kind: self.source})
        if self.model:
            etree.SubElement(nic, "model", type=self.model)
        if self.inbound or self.outbound:
            bandwidth = etree.SubElement(nic, "bandwidth")
            for direction, rate in (("inbound", self.inbound), ("outbound", self.outbound)):
                if rate is not None:
                    bandwidth.append(rate.to_xml(direction))
        return nic


@dataclass(frozen=True)
class CpuTuneSpec:
    """``<cputune>``: a CFS quota per vCPU (``quota`` of every ``period`` µs) and a relative weight."""

    period: int
    quota: int
    shares: int

    def to_xml(self) -> etree._Element:
        tune = etree.Element("cputune")
        for tag in ("shares", "period", "quota"):
            etree.SubElement(tune, tag).text = str(getattr(self, tag))
        return tune


@dataclass(frozen=True)
class OsSpec:
    arch: str | None = None  # None: the hypervisor's default (the test driver knows only i686)
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None

    def to_xml(self) -> etree._Element:
        os_element = etree.Element("os")
        kind = etree.SubElement(os_element, "type")
        kind.text = "hvm"
        if self.arch:
            kind.set("arch", self.arch)
        for tag, value in (("kernel", self.kernel), ("initrd", self.initrd), ("cmdline", self.cmdline)):
            if value is not None:
                etree.SubElement(os_element, tag).text = str(value)
        if self.kernel is None:
            etree.SubElement(os_element, "boot", dev="hd")
        return os_element


@dataclass(frozen=True)
class OwnerSpec:
    """The ``<metadata>`` child that marks a domain as vws's and names its workspace."""

    workspace_id: int
    node: str

    def to_xml(self) -> etree._Element:
        return etree.Element(OWNER_TAG, {"id": str(self.workspace_id), "node": self.node}, nsmap={"vws": VWS_NS})


@dataclass(frozen=True)
class DomainSpec:
    name: str
    uuid: str
    virt_type: str  # test | qemu | kvm
    memory_mb: int
    vcpus: int
    owner: OwnerSpec
    os: OsSpec = field(default_factory=OsSpec)
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    console_log: Path | None = None  # serial console written to this file
    acpi: bool = True  # graceful shutdown needs ACPI on QEMU guests
    cputune: CpuTuneSpec | None = None
    # What a live renegotiation may grow to (balloon, vCPU hot-plug); None: what it starts with.
    max_memory_mb: int | None = None
    max_vcpus: int | None = None

    def to_element(self) -> etree._Element:
        domain = etree.Element("domain", type=self.virt_type)
        etree.SubElement(domain, "name").text = self.name
        etree.SubElement(domain, "uuid").text = self.uuid
        etree.SubElement(domain, "metadata").append(self.owner.to_xml())
        etree.SubElement(domain, "memory", unit="MiB").text = str(max(self.memory_mb, self.max_memory_mb or 0))
        etree.SubElement(domain, "currentMemory", unit="MiB").text = str(self.memory_mb)
        vcpu = etree.SubElement(domain, "vcpu")
        vcpu.text = str(max(self.vcpus, self.max_vcpus or 0))
        if vcpu.text != str(self.vcpus):
            vcpu.set("current", str(self.vcpus))
        if self.cputune is not None:
            domain.append(self.cputune.to_xml())
        domain.append(self.os.to_xml())
        if self.acpi:
            etree.SubElement(etree.SubElement(domain, "features"), "acpi")
        for tag, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
            etree.SubElement(domain, tag).text = action
        devices = etree.SubElement(domain, "devices")
        devices.extend(disk.to_xml() for disk in self.disks)
        devices.extend(nic.to_xml() for nic in self.nics)
        if self.console_log is not None:
            serial = etree.SubElement(devices, "serial", type="file")
            etree.SubElement(serial, "source", path=str(self.console_log))
            etree.SubElement(serial, "target", port="0")
        return domain

    def to_xml(self) -> str:
        return etree.tostring(self.to_element(), encoding="unicode")


def owner_of(metadata: str) -> int | None:
    """The workspace id in a ``<vws:workspace>`` metadata element, or None.

    ``virDomainGetMetadata`` returns the element stripped of its namespace (asking for
    the namespace already selected it), so the local name is what is checked.
    """
    element = etree.fromstring(metadata)
    if etree.QName(element).localname != "workspace":
        return None
    try:
        return int(element.get("id", ""))
    except ValueError:
        return None
