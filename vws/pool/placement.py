"""Which node each workspace goes to: pure functions over a snapshot of node loads.

Two policies, chosen by ``PoolConfig.placement``:

- ``round-robin`` (Nimbus's default): the node with the most free memory, which spreads
  consecutive workspaces over the pool.
- ``greedy``: the node with the least free memory that still fits, which packs nodes
  and leaves whole nodes free for large requests.

Ties go to the node whose name sorts first, so placement is deterministic. Memory is
never overcommitted, vCPUs placed on a node never exceed its CPU count, inactive and
unavailable nodes are skipped, and a node must reach every network pool the request's
NICs name. A group is placed whole or not at all.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from vws.config import ConfigError
from vws.errors import SchedulingFailed
from vws.matching import Requirements
from vws.pool.machine import MachineRequest


@dataclass(frozen=True)
class Demand:
    memory_mb: int
    vcpus: int
    pools: frozenset[str] = frozenset()
    shaped: frozenset[str] = frozenset()  # pools of the NICs whose bandwidth is to be enforced
    nodes: frozenset[str] | None = None  # the nodes of a kind that runs it (vws.matching); None: any


@dataclass(frozen=True)
class NodeLoad:
    name: str
    memory_mb: int  # what vws may give out on the node
    cpus: int
    used_memory_mb: int = 0
    used_cpus: int = 0
    networks: frozenset[str] = frozenset({"*"})
    usable: bool = True  # active and available
    shapes: frozenset[str] = frozenset({"*"})  # pools whose NICs it can enforce bandwidth on

    def honours(self, demand: Demand) -> bool:
        """Is of a kind that runs the request, reaches its networks, and can enforce its bandwidth on them."""
        return (
            (demand.nodes is None or self.name in demand.nodes)
            and self.reaches(demand.pools)
            and ("*" in self.shapes or demand.shaped <= self.shapes)
        )

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.used_memory_mb

    @property
    def free_cpus(self) -> int:
        return self.cpus - self.used_cpus

    def reaches(self, pools: frozenset[str]) -> bool:
        return "*" in self.networks or pools <= self.networks

    def fits(self, demand: Demand) -> bool:
        return (
            self.usable
            and self.honours(demand)
            and demand.memory_mb <= self.free_memory_mb
            and demand.vcpus <= self.free_cpus
        )

    def holding(self, demand: Demand, count: int = 1) -> "NodeLoad":
        return replace(
            self,
            used_memory_mb=self.used_memory_mb + count * demand.memory_mb,
            used_cpus=self.used_cpus + count * demand.vcpus,
        )

    def room_for(self, demand: Demand) -> int:
        """How many more workspaces of ``demand`` fit here."""
        if not (self.usable and self.honours(demand)):
            return 0
        return max(0, min(self.free_memory_mb // demand.memory_mb, self.free_cpus // demand.vcpus))


Policy = Callable[[Sequence[NodeLoad]], NodeLoad]


def demand(machine: MachineRequest) -> Demand:
    """What one workspace of ``machine`` asks of a node."""
    pools = {nic.name: nic.association for nic in machine.nics}
    shaped = frozenset(pools[shaping.nic] for shaping in machine.bandwidth if shaping.nic in pools)
    return Demand(machine.memory_mb, machine.vcpus, frozenset(pools.values()), shaped)


def requirements(machine: MachineRequest) -> Requirements:
    """What ``machine`` asks of the node it runs on, for matching (``vws.matching``)."""
    return Requirements(
        machine.architecture,
        machine.vmm,
        machine.memory_mb,
        machine.vcpus,
        frozenset(nic.association for nic in machine.nics),
    )


def round_robin(candidates: Sequence[NodeLoad]) -> NodeLoad:
    return min(candidates, key=lambda load: (-load.free_memory_mb, load.name))


def greedy(candidates: Sequence[NodeLoad]) -> NodeLoad:
    return min(candidates, key=lambda load: (load.free_memory_mb, load.name))


POLICIES: dict[str, Policy] = {"round-robin": round_robin, "greedy": greedy}


def policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(
            f"[pool] placement {name!r} is not a policy; known: {', '.join(POLICIES)}", ("pool", "placement")
        ) from None


def place_group(loads: Sequence[NodeLoad], demand: Demand, count: int, choose: Policy) -> list[str]:
    """Node names for ``count`` workspaces of ``demand``, or SchedulingFailed for the whole group."""
    check_room(loads, demand, count)
    current = {load.name: load for load in loads}
    chosen = []
    for _ in range(count):  # there is room: some node always fits
        node = choose([load for load in current.values() if load.fits(demand)])
        current[node.name] = node.holding(demand)
        chosen.append(node.name)
    return chosen


def check_room(loads: Sequence[NodeLoad], demand: Demand, count: int) -> None:
    """SchedulingFailed unless the nodes can hold ``count`` workspaces of ``demand`` between them.

    Each node's room is independent of the others', so this is exact, and costs one pass
    over the nodes whatever ``count`` is: a group of a billion is refused at once.
    """
    room = sum(load.room_for(demand) for load in loads)
    if room < count:
        full = [load.holding(demand, load.room_for(demand)) for load in loads]
        raise SchedulingFailed(_why_not(full, demand, room, count))


def _why_not(loads: list[NodeLoad], demand: Demand, placed: int, count: int) -> str:
    """A reason a user can act on: which resource ran out."""
    what = f"a {demand.memory_mb} MB, {demand.vcpus}-CPU workspace"
    group = f" ({placed} of {count} placed; none are kept)" if count > 1 else ""
    usable = [load for load in loads if load.usable]
    if not usable:
        return f"no active, available node can take {what}{group}"
    reaching = [load for load in usable if load.reaches(demand.pools)]
    if not reaching:
        return f"no active node reaches network pool(s) {', '.join(sorted(demand.pools))}{group}"
    honouring = [load for load in reaching if load.honours(demand)]
    if not honouring:
        return (
            f"no active node can enforce bandwidth on network pool(s) {', '.join(sorted(demand.shaped))}"
            f" (it needs a bridged pool: [pool] bridges){group}"
        )
    reaching = honouring
    most_memory = max(reaching, key=lambda load: load.free_memory_mb)
    if all(load.free_memory_mb < demand.memory_mb for load in reaching):
        return (
            f"not enough memory for {what}{group}: the most free is "
            f"{most_memory.free_memory_mb} MB on {most_memory.name}"
        )
    most_cpus = max(reaching, key=lambda load: load.free_cpus)
    return (
        f"not enough CPUs for {what}{group}: nodes with the memory free have at most "
        f"{max(load.free_cpus for load in reaching if load.free_memory_mb >= demand.memory_mb)} "
        f"CPUs free (most anywhere: {most_cpus.free_cpus} on {most_cpus.name})"
    )
