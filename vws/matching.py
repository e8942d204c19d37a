"""Whether an appliance can run on what a pool offers, and if not, why: pure rules, no I/O.

The service refuses a create that no node can host (``vws.pool`` applies these rules to
each node, and places only on nodes that match); ``vws-client match`` applies the same
rules to what a factory publishes, so both give the same reason.

GT4 metadata names CPU architectures in JSDL's words (``x86``, ``x86_64``, ``arm``,
``sparc``...); libvirt in its own (``i686``, ``aarch64``, ``sparc64``...). A requirement
is met by any architecture its name stands for; an unknown name stands only for itself.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from vws.errors import InvalidMetadata, SchedulingFailed

ANY_NETWORK = "*"

# JSDL (and loose GT4) names -> the libvirt architectures that satisfy them, preferred first.
_STANDS_FOR = {
    "x86": ("i686",),
    "x86_32": ("i686",),
    "i386": ("i686",),
    "i686": ("i686",),
    "x86_64": ("x86_64",),
    "amd64": ("x86_64",),
    "arm": ("aarch64", "armv7l"),
    "arm64": ("aarch64",),
    "powerpc": ("ppc64le", "ppc64", "ppc"),
    "sparc": ("sparc64", "sparc"),
    "mips": ("mips64el", "mips64", "mipsel", "mips"),
    "parisc": ("parisc64", "parisc"),
    "ia64": ("ia64",),
}
# libvirt architectures -> the JSDL ProcessorArchitectureEnumeration value naming them.
_JSDL = {arch: name for name in ("x86_32", "x86_64", "arm", "powerpc", "sparc", "mips", "parisc", "ia64")
         for arch in _STANDS_FOR[name]}  # fmt: skip


def stands_for(requested: str) -> tuple[str, ...]:
    """The libvirt architectures a requested name accepts, preferred first."""
    name = requested.strip().lower()
    return _STANDS_FOR.get(name, (name,))


def jsdl_name(arch: str) -> str:
    """The JSDL name of a libvirt architecture (``other`` for those JSDL does not list)."""
    return _JSDL.get(arch, "other")


@dataclass(frozen=True)
class Vmm:
    """A hypervisor as a requirement names it, or as a node offers it."""

    type: str
    versions: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " ".join((self.type, *self.versions))

    def accepts(self, offered: "Vmm") -> bool:
        """Whether ``offered`` (one type, its one version) meets this requirement.

        A required version is met by that version and every release under it: ``7`` by 7.2.0.
        """
        if self.type.lower() != offered.type.lower():
            return False
        return not self.versions or any(
            have == want or have.startswith(want + ".") for want in self.versions for have in offered.versions
        )


def parse_vmm(text: str) -> Vmm:
    """``TYPE [VERSION...]``, as ``[pool] legacy_vmm`` lists them."""
    words = text.split()
    if not words:
        raise ValueError("a VMM needs a type")
    return Vmm(words[0], tuple(words[1:]))


@dataclass(frozen=True)
class Offer:
    """What one node (or one kind of node, as a factory publishes it) gives a workspace."""

    architectures: tuple[str, ...]  # libvirt guest architectures, the native one first
    vmms: tuple[Vmm, ...]  # each hypervisor type with its version
    memory_mb: int  # the most one workspace can get there
    cpus: int
    networks: frozenset[str] = frozenset({ANY_NETWORK})
    nodes: int = 1

    def reaches(self, pools: Iterable[str]) -> bool:
        return ANY_NETWORK in self.networks or set(pools) <= self.networks


@dataclass(frozen=True)
class PoolOffer:
    """What a whole pool offers, as its factory publishes it: each kind of node, and the
    legacy VMM requirements every node answers to (``runs_vmm``)."""

    kinds: tuple[Offer, ...]
    legacy: tuple[Vmm, ...] = ()


@dataclass(frozen=True)
class Requirements:
    """What an appliance asks of the node it runs on; ``None`` and empty mean anything."""

    architecture: str | None = None
    vmm: Vmm | None = None
    memory_mb: int = 0
    cpus: int = 0
    networks: frozenset[str] = field(default_factory=frozenset)


def guest_architecture(requirements: Requirements, offer: Offer) -> str | None:
    """The architecture to boot the guest as on ``offer``'s node; None when the node has none of them."""
    return pick_architecture(requirements.architecture, offer.architectures)


def pick_architecture(requested: str | None, offered: Sequence[str]) -> str | None:
    """The first of ``offered`` that ``requested`` stands for (the native one when nothing is asked)."""
    if requested is None:
        return offered[0] if offered else None
    return next((arch for arch in stands_for(requested) if arch in offered), None)


def runs_vmm(requirements: Requirements, offer: Offer, legacy: Sequence[Vmm] = ()) -> bool:
    """Whether the node's hypervisor meets the requirement. ``legacy`` lists requirements every
    node meets: GT4 metadata asks for Xen, whose images vws runs under QEMU."""
    wanted = requirements.vmm
    if wanted is None or any(wanted.accepts(vmm) or _covers(vmm, wanted) for vmm in legacy):
        return True
    return any(wanted.accepts(Vmm(vmm.type, (version,))) for vmm in offer.vmms for version in vmm.versions or ("",))


def _covers(legacy: Vmm, wanted: Vmm) -> bool:
    """A legacy entry with no version answers to its type whatever versions are asked for."""
    return not legacy.versions and legacy.type.lower() == wanted.type.lower()


def runs(requirements: Requirements, offer: Offer, legacy: Sequence[Vmm] = ()) -> bool:
    """Whether ``offer``'s node is of a kind that runs the appliance (architecture and hypervisor);
    whether it has the room and networks is placement's question."""
    return guest_architecture(requirements, offer) is not None and runs_vmm(requirements, offer, legacy)


def check(requirements: Requirements, offers: Sequence[Offer], legacy: Sequence[Vmm] = ()) -> None:
    """Refuse requirements no offer meets, naming the first unmet one and what is offered.

    Architecture, hypervisor and networks are the metadata's (InvalidMetadata, a
    WorkspaceMetadataFault); memory and CPUs beyond every node that runs it cannot be
    scheduled (SchedulingFailed, as when nodes are full).
    """
    failure = _failed(requirements, offers, legacy)
    if failure is not None:
        raise failure


def _failed(
    requirements: Requirements, offers: Sequence[Offer], legacy: Sequence[Vmm]
) -> InvalidMetadata | SchedulingFailed | None:
    """Each requirement narrows the offers; the first that leaves none is the reason."""
    if not offers:  # no active node, or none described yet: nothing to match, placement says why
        return None
    arch = requirements.architecture
    matching = [offer for offer in offers if guest_architecture(requirements, offer)]
    if not matching:
        offered = _listed(a for offer in offers for a in offer.architectures)
        return InvalidMetadata(f"CPU architecture {arch} is not offered: this pool offers {offered}")
    offers, matching = matching, [offer for offer in matching if runs_vmm(requirements, offer, legacy)]
    if not matching:
        offered = _listed(str(vmm) for offer in offers for vmm in offer.vmms)
        where = f" for {arch}" if arch else ""
        return InvalidMetadata(f"VMM {requirements.vmm} is not offered{where}: this pool offers {offered}")
    offers, matching = matching, [offer for offer in matching if offer.reaches(requirements.networks)]
    if not matching:
        offered = _listed(name for offer in offers for name in offer.networks)
        return InvalidMetadata(
            f"network association(s) {_listed(requirements.networks)} are not reached by a node that can run "
            f"this appliance: those reach {offered}"
        )
    largest = max(offer.memory_mb for offer in matching)
    if requirements.memory_mb > largest:
        return SchedulingFailed(
            f"{requirements.memory_mb} MB of memory requested: a node that can run this appliance gives "
            f"one workspace at most {largest} MB"
        )
    most = max(offer.cpus for offer in matching if offer.memory_mb >= requirements.memory_mb)
    if requirements.cpus > most:
        return SchedulingFailed(
            f"{requirements.cpus} CPUs requested: a node that can run this appliance with "
            f"{requirements.memory_mb} MB gives one workspace at most {most}"
        )
    return None


def _listed(names: Iterable[str]) -> str:
    unique = sorted(set(names))
    return ", ".join(unique) if unique else "none"


def kinds(offers: Iterable[Offer]) -> list[Offer]:
    """Offers grouped by kind (architectures and hypervisors), as a factory publishes them: the
    largest memory and CPUs of the kind's nodes, every network one of them reaches, how many."""
    grouped: dict[tuple, Offer] = {}
    for offer in offers:
        key = (offer.architectures, offer.vmms)
        kind = grouped.get(key)
        grouped[key] = (
            offer
            if kind is None
            else replace(
                kind,
                memory_mb=max(kind.memory_mb, offer.memory_mb),
                cpus=max(kind.cpus, offer.cpus),
                networks=kind.networks | offer.networks,
                nodes=kind.nodes + offer.nodes,
            )
        )
    return [grouped[key] for key in sorted(grouped, key=repr)]
