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
from vws.pool.domain_xml import DiskSpec, DomainSpec, NicSpec, OsSpec, OwnerSpec
from vws.pool.machine import MachineRequest, NetworkLease, Placement

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


def nic(lease: NetworkLease, node: NodeFacts, kind: str) -> NicSpec:
    """The leased MAC on a plain network interface the test driver accepts, else bridged or user."""
    if kind == TEST:
        return NicSpec(mac=lease.mac, kind="network", source="default")
    bridge = node.bridges.get(lease.pool)
    if bridge:
        return NicSpec(mac=lease.mac, kind="bridge", source=bridge)
    return NicSpec(mac=lease.mac, kind="user", source=None)


def design(
    machine: MachineRequest,
    placement: Placement,
    node: NodeFacts,
    disks: Sequence[DiskSpec],
    *,
    wanted_type: str = QEMU,
    kernel: KernelFiles | None = None,
    console_log: Path | None = None,
) -> DomainSpec:
    kind = virt_type(node, wanted_type)
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
        nics=tuple(nic(lease, node, kind) for lease in placement.leases),
        console_log=console_log,
        acpi=kind != TEST,
    )
