"""What the pool is asked to run: one virtual machine, described without any XML.

A front end builds a MachineRequest (named through vws.workspace.request, as part of
the DeploymentRequest it carries); the pool turns it into a placement, leases, disks
and a libvirt domain.
"""

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vws.matching import Vmm


@dataclass(frozen=True)
class NicRequest:
    name: str
    association: str  # the network pool to take the address from
    acquisition: str = "AllocateAndConfigure"  # or AcceptAndConfigure / Advisory
    mac: str | None = None
    ip: str | None = None  # with AcceptAndConfigure: the address the client wants
    hostname: str | None = None


@dataclass(frozen=True)
class DiskRequest:
    location: str  # image URI: file://name, file:///abs/path, http(s)://host/path
    mount_as: str  # guest device name as GT4 metadata says it: sda1, hda, xvda...
    writable: bool = True
    layers: tuple[str, ...] = ()  # a signed appliance's: the sha256 each layer must still have, bottom first


@dataclass(frozen=True)
class BlankDiskRequest:
    partition_name: str
    mount_as: str
    size_mb: int


@dataclass(frozen=True)
class KernelRequest:
    image: str | None = None  # file://vmlinuz-name or absolute path
    initrd: str | None = None
    parameters: str | None = None


@dataclass(frozen=True)
class ContextFile:
    path_on_vm: str
    content: str


@dataclass(frozen=True)
class Rate:
    average_kbytes: int
    peak_kbytes: int | None = None
    burst_kb: int | None = None


@dataclass(frozen=True)
class NicBandwidth:
    """Traffic shaping for one NIC, in kilobytes (KiB) per second as libvirt counts: an average
    rate and, optionally, a peak it may reach in bursts of ``burst_kb``."""

    nic: str
    inbound: Rate | None = None
    outbound: Rate | None = None


@dataclass(frozen=True)
class MachineRequest:
    memory_mb: int
    vcpus: int = 1
    root: DiskRequest | None = None
    partitions: tuple[DiskRequest, ...] = ()
    blank_disks: tuple[BlankDiskRequest, ...] = ()
    nics: tuple[NicRequest, ...] = ()
    kernel: KernelRequest | None = None
    architecture: str | None = None
    vmm: Vmm | None = None  # the hypervisor the metadata requires
    files: tuple[ContextFile, ...] = field(default=())
    userdata: str | None = None
    # Enforcement (issue #14): the share of one host CPU each vCPU may use (None: no cap),
    # and per-NIC traffic shaping; both become libvirt <cputune> and <bandwidth>.
    cpu_percent: int | None = None
    bandwidth: tuple[NicBandwidth, ...] = ()
    # The context broker's bootstrap and agent, for the drive's vws/context/ (path_on_vm: a file name).
    context: tuple[ContextFile, ...] = field(default=())


@dataclass(frozen=True)
class NetworkLease:
    """An address a network pool handed to one NIC of one workspace."""

    nic: str
    pool: str
    ip: str
    hostname: str
    mac: str
    gateway: str | None = None
    broadcast: str | None = None
    netmask: str | None = None
    dns: str | None = None
    acquisition: str = "AllocateAndConfigure"


@dataclass(frozen=True)
class Placement:
    """Where a workspace runs and what it holds there; all taken in one transaction."""

    workspace_id: int
    node: str
    domain: str
    leases: tuple[NetworkLease, ...] = ()


@dataclass(frozen=True)
class Allocation:
    """The part of a MachineRequest that renegotiation may change on a defined domain."""

    memory_mb: int
    vcpus: int
    cpu_percent: int | None = None
    bandwidth: tuple[NicBandwidth, ...] = ()

    @classmethod
    def of(cls, machine: MachineRequest) -> "Allocation":
        return cls(machine.memory_mb, machine.vcpus, machine.cpu_percent, machine.bandwidth)

    def applied_to(self, machine: MachineRequest) -> MachineRequest:
        return replace(machine, **self.__dict__)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Allocation":
        fields = json.loads(text)
        return cls(
            fields["memory_mb"], fields["vcpus"], fields["cpu_percent"], tuple(map(bandwidth, fields["bandwidth"]))
        )


def bandwidth(fields: dict[str, Any]) -> NicBandwidth:
    """A NicBandwidth from its ``asdict`` form (a stored request or allocation)."""

    def rate(key: str) -> Rate | None:
        value = fields.get(key)
        return None if value is None else Rate(**value)

    return NicBandwidth(fields["nic"], rate("inbound"), rate("outbound"))
