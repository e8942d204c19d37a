"""What the pool is asked to run: one virtual machine, described without any XML.

A front end builds a MachineRequest (named through vws.workspace.request, as part of
the DeploymentRequest it carries); the pool turns it into a placement, leases, disks
and a libvirt domain.
"""

from dataclasses import dataclass, field


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
class MachineRequest:
    memory_mb: int
    vcpus: int = 1
    root: DiskRequest | None = None
    partitions: tuple[DiskRequest, ...] = ()
    blank_disks: tuple[BlankDiskRequest, ...] = ()
    nics: tuple[NicRequest, ...] = ()
    kernel: KernelRequest | None = None
    architecture: str | None = None
    files: tuple[ContextFile, ...] = field(default=())
    userdata: str | None = None
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
