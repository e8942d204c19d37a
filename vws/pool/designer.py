"""Policy that fills the domain config objects: what a MachineRequest becomes on a node.

Kept apart from ``domain_xml.py`` (which only renders) so the choices live in one place:
the domain type per node, virtio everywhere, guest device names, how a NIC joins the
network, and where the console is logged.
"""

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vws.config import ConfigError
from vws.errors import InvalidMetadata
from vws.matching import pick_architecture
from vws.pool.domain_xml import CpuTuneSpec, DiskSpec, DomainSpec, NicSpec, OsSpec, OwnerSpec, RateSpec
from vws.pool.machine import MachineRequest, NetworkLease, NicBandwidth, Placement, Rate

TEST = "test"
QEMU = "qemu"
KVM = "kvm"
AUTO = "auto"  # a wanted type: kvm where the node offers it, else qemu


@dataclass(frozen=True)
class NodeFacts:
    """What the designer needs to know about the node a domain goes to."""

    name: str
    virt_types: frozenset[str]  # domain types the node offers (and, for kvm, that run: see kvm_probe)
    bridges: Mapping[str, str] = field(default_factory=dict)  # network pool -> host bridge
    architectures: tuple[str, ...] = ("x86_64", "i686")  # guest architectures it runs, its own first


@dataclass(frozen=True)
class KernelFiles:
    kernel: Path
    initrd: Path | None = None
    cmdline: str | None = None


# Ends in a non-digit, so a name splits into (prefix, id) one way only: services with
# different prefixes never make the same name.
_PREFIX = re.compile(r"[A-Za-z0-9_.-]*[A-Za-z_.-]")


def domain_prefix(prefix: str) -> str:
    """``[pool] domain_prefix``, checked: letters, digits, ``_.-``, not ending in a digit."""
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"[pool] domain_prefix {prefix!r}: use letters, digits and _.- only, ending in a non-digit",
            ("pool", "domain_prefix"),
        )
    return prefix


def domain_name(prefix: str, workspace_id: int) -> str:
    """``<prefix><id>``; Nimbus named its domains ``wrksp-<id>``, the default prefix, which admins know."""
    return f"{prefix}{workspace_id}"


def disk_target(index: int) -> str:
    """vda, vdb, ... vdz, vdaa, ...: virtio names for the index-th disk."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("a") + remainder) + letters
    return "vd" + letters


def wanted_virt_type(wanted: str) -> str:
    """``[pool] virt_type``, checked."""
    if wanted not in (AUTO, QEMU, KVM):
        raise ConfigError(f"[pool] virt_type {wanted!r} is not one of {AUTO}, {QEMU}, {KVM}", ("pool", "virt_type"))
    return wanted


def virt_type(node: NodeFacts, wanted: str) -> str:
    """``test`` on test nodes; otherwise ``wanted`` (qemu|kvm), with ``auto`` preferring kvm."""
    if TEST in node.virt_types:
        return TEST
    if wanted == AUTO:
        return KVM if KVM in node.virt_types else QEMU
    return wanted


def nic(lease: NetworkLease, node: NodeFacts, kind: str, shaping: NicBandwidth | None = None) -> NicSpec:
    """The leased MAC on a plain network interface the test driver accepts, else bridged or user;
    shaped as ``shaping`` says (placement put it on a node that can shape it: see ``shapes``)."""
    rates = {} if shaping is None else {"inbound": rate(shaping.inbound), "outbound": rate(shaping.outbound)}
    if kind == TEST:
        return NicSpec(mac=lease.mac, kind="network", source="default", **rates)
    bridge = node.bridges.get(lease.pool)
    if bridge:
        return NicSpec(mac=lease.mac, kind="bridge", source=bridge, **rates)
    return NicSpec(mac=lease.mac, kind="user", source=None)


def rate(wanted: Rate | None) -> RateSpec | None:
    return None if wanted is None else RateSpec(wanted.average_kbytes, wanted.peak_kbytes, wanted.burst_kb)


def shapes(uri: str, bridged: frozenset[str]) -> frozenset[str]:
    """The network pools whose NICs a node can shape: any on the test driver; on qemu nodes
    only bridged ones (libvirt cannot shape QEMU user networking)."""
    return frozenset({"*"}) if uri.startswith("test:") else bridged


# The CFS period libvirt and the kernel default to: a quota is a share of it.
CPU_PERIOD_US = 100_000
SHARES_PER_CPU = 1024  # cgroup v1's default weight of one task group


def cputune(cpu_percent: int | None, vcpus: int) -> CpuTuneSpec | None:
    """Each vCPU capped at ``cpu_percent`` of one host CPU, and weighted by what it was granted."""
    if cpu_percent is None:
        return None
    return CpuTuneSpec(
        period=CPU_PERIOD_US,
        quota=CPU_PERIOD_US * cpu_percent // 100,
        shares=max(2, SHARES_PER_CPU * vcpus * cpu_percent // 100),  # 2: the kernel's least weight
    )


def headroom(granted: int, percent: int) -> int:
    """The most a live renegotiation may grow ``granted`` to (``[pool] live_headroom_percent``)."""
    return granted + granted * percent // 100


def design(
    machine: MachineRequest,
    placement: Placement,
    node: NodeFacts,
    disks: Sequence[DiskSpec],
    *,
    wanted_type: str = QEMU,
    kernel: KernelFiles | None = None,
    console_log: Path | None = None,
    headroom_percent: int = 0,
) -> DomainSpec:
    kind = virt_type(node, wanted_type)
    shaping = {wanted.nic: wanted for wanted in machine.bandwidth}
    arch = None if kind == TEST else pick_architecture(machine.architecture, node.architectures)
    if kind != TEST and arch is None:  # placement chose a node that runs it: a node changed under us
        raise InvalidMetadata(f"{node.name} runs none of CPU architecture {machine.architecture}")
    os_spec = OsSpec(arch=arch)
    if kernel is not None:
        os_spec = OsSpec(arch=arch, kernel=kernel.kernel, initrd=kernel.initrd, cmdline=kernel.cmdline)
    return DomainSpec(
        name=placement.domain,
        uuid=str(uuid.uuid4()),
        virt_type=kind,
        memory_mb=machine.memory_mb,
        vcpus=machine.vcpus,
        owner=OwnerSpec(placement.workspace_id, placement.node),
        os=os_spec,
        disks=tuple(disks),
        nics=tuple(nic(lease, node, kind, shaping.get(lease.nic)) for lease in placement.leases),
        console_log=console_log,
        acpi=kind != TEST,
        cputune=cputune(machine.cpu_percent, machine.vcpus),
        max_memory_mb=headroom(machine.memory_mb, headroom_percent),
        max_vcpus=headroom(machine.vcpus, headroom_percent),
    )
