"""The capacity calendar: what each node holds over a window of time.

Every placement holds its memory and CPUs from ``starts_at`` (null: since it was made) to
``ends_at`` (its lease's end). A node's load over a window is the peak of what overlaps it,
so an advance reservation for tomorrow leaves today free, and a best-effort request whose
lease would reach into a reservation sees it. A lease already past its end still counts,
for any window, until the sweeper has given it back.

``fitting`` answers a refusal and an availability question: the windows, from the one asked
for, that the nodes can hold, trying each moment some placement ends (when room appears).
``Calendar`` is what the PoolManager asks, inside its callers' transactions.
"""

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlite_utils import Database

from vws.clock import Clock, parse_timestamp, timestamp
from vws.errors import SchedulingFailed
from vws.pool import nodes, placement
from vws.pool.placement import Demand, NodeLoad

EARLIEST_HORIZON = timedelta(days=30)  # how far ahead a refusal looks for the earliest window that fits

# Placements that overlap [start, end), found through the pool_calendar R*Tree (a superset,
# narrowed on the exact times), and those past their end not given back yet: each one's node,
# share and window.
_OVERLAPPING = """
    select p.node, p.memory_mb, p.vcpus, p.starts_at, p.ends_at
    from pool_calendar c join pool_placements p on p.workspace_id = c.workspace_id
    where c.starts < unixepoch(:end) + 1 and c.ends > unixepoch(:start) - 1 and p.held
      and (p.starts_at is null or p.starts_at < :end) and (p.ends_at is null or p.ends_at > :start)
    union all
    select node, memory_mb, vcpus, starts_at, ends_at from pool_placements
    where held = 1 and ends_at <= :now and ends_at <= :start
"""


# Reservations yet to start (through the partial index on starts_at): those starting in a
# window, and what they hold per node.
_STARTING_IN = "select 1 from pool_placements where held and starts_at > ? and starts_at < ? limit 1"
_FUTURE = (  # named index: left to itself, the planner scans every placement by node for the group by
    "select node, sum(memory_mb), sum(vcpus) from pool_placements indexed by pool_placements_starts"
    " where held and starts_at > ? group by node"
)


def _grouped(found) -> Iterator[tuple[str, tuple[int, int]]]:
    for node, memory, vcpus in found:
        yield node, (memory, vcpus)


def _less(loads: list[NodeLoad], future: dict[str, tuple[int, int]]) -> list[NodeLoad]:
    """``loads`` without what reservations yet to start hold (node_holdings counts them)."""
    if not future:
        return loads
    return [
        dataclasses.replace(
            load,
            used_memory_mb=load.used_memory_mb - future[load.name][0],
            used_cpus=load.used_cpus - future[load.name][1],
        )
        if load.name in future
        else load
        for load in loads
    ]


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def at(self, start: datetime) -> "Window":
        return Window(start, start + self.length)


def loads_over(db: Database, sizes: Sequence[NodeLoad], window: Window, now: datetime) -> list[NodeLoad]:
    """Each node (``sizes``, nothing used) with what is used the peak of what overlaps ``window``."""
    bounds = {"start": timestamp(window.start), "end": timestamp(window.end), "now": timestamp(now)}
    held: dict[str, list[tuple[str, str, int, int]]] = {}
    for node, memory, vcpus, starts, ends in db.execute(_OVERLAPPING, bounds):
        overdue = ends is None or ends <= bounds["now"]  # held until given back: as if open-ended
        held.setdefault(node, []).append((starts or "", "~" if overdue else ends, memory, vcpus))
    start = bounds["start"]
    return [_holding(size, held[size.name], start) if size.name in held else size for size in sizes]


def _holding(size: NodeLoad, bookings: list[tuple[str, str, int, int]], start: str) -> NodeLoad:
    """``size`` using the most memory and CPUs held at once from ``start`` on (each at its worst moment)."""
    events = []
    for starts, ends, memory, vcpus in bookings:
        events.append((max(starts, start), 1, memory, vcpus))
        events.append((ends, 0, -memory, -vcpus))  # at one instant, ends come before starts
    events.sort()
    memory = vcpus = most_memory = most_vcpus = 0
    for _, _, memory_change, vcpus_change in events:
        memory += memory_change
        vcpus += vcpus_change
        most_memory, most_vcpus = max(most_memory, memory), max(most_vcpus, vcpus)
    # Built field by field: dataclasses.replace costs more than the peak itself.
    return NodeLoad(
        size.name, size.memory_mb, size.cpus, most_memory, most_vcpus, size.networks, size.usable, size.shapes
    )


def fitting(db: Database, window: Window, fits: Callable[[Window], bool], horizon: timedelta) -> Iterator[Window]:
    """Windows of ``window``'s length that ``fits``, earliest first: from its start, then from each
    moment within ``horizon`` at which a placement ends (the only moments room appears)."""
    if fits(window):
        yield window
    ends = db.execute(
        "select distinct ends_at from pool_placements where held = 1 and ends_at > ? and ends_at <= ? order by ends_at",
        [timestamp(window.start), timestamp(window.start + horizon)],
    ).fetchall()
    for (moment,) in ends:
        candidate = window.at(parse_timestamp(moment))
        if fits(candidate):
            yield candidate


def earliest_fit(db: Database, window: Window, fits: Callable[[Window], bool], horizon: timedelta) -> Window | None:
    """The first window of ``window``'s length, from its start on and within ``horizon``, that ``fits``."""
    return next(fitting(db, window, fits, horizon), None)


class Calendar:
    """The nodes' loads over time, and the questions placement asks of them."""

    def __init__(self, clock: Clock, policy: placement.Policy, bridged: frozenset[str]) -> None:
        self._clock = clock
        self._policy = policy
        self._bridged = bridged  # the network pools whose NICs qemu nodes can shape

    def loads(self, db: Database, window: Window | None = None) -> list[NodeLoad]:
        """Each node's load over ``window``; None: everything held, whenever."""
        if window is None:
            return nodes.loads(db, self._bridged)
        now = timestamp(self._clock.now())
        if timestamp(window.start) <= now and not db.execute(_STARTING_IN, [now, timestamp(window.end)]).fetchone():
            # From now, with no reservation starting before the window ends: what every placement
            # already started holds at this moment is the peak, read from node_holdings whatever
            # the number of live workspaces (best effort's create takes this path).
            return _less(nodes.loads(db, self._bridged), dict(_grouped(db.execute(_FUTURE, [now]))))
        return loads_over(db, nodes.sizes(db, self._bridged), window, self._clock.now())

    def booked(self, window: Window | None) -> dict[str, str | None]:
        """A placement's window as its row keeps it: no start for one that holds from now."""
        if window is None:
            return {}
        future = window.start > self._clock.now()
        return {"starts_at": timestamp(window.start) if future else None, "ends_at": timestamp(window.end)}

    def check_room(self, db: Database, demand: Demand, count: int, window: Window | None) -> None:
        """SchedulingFailed when the nodes cannot hold ``count`` of ``demand`` over ``window``, saying
        when the earliest window of that length that they can hold begins."""
        try:
            placement.check_room(self.loads(db, window), demand, count)
        except SchedulingFailed as refused:
            if window is None:
                raise
            raise SchedulingFailed(f"{refused.description}; {self._earliest(db, demand, count, window)}") from None

    def availability(self, db: Database, demand: Demand, window: Window, count: int) -> list[Window]:
        """Up to ``count`` windows like ``window`` that a node can hold ``demand`` for, earliest first."""
        return list(itertools.islice(fitting(db, window, self._fits(db, demand, 1), EARLIEST_HORIZON), count))

    def keep_reserved(self, db: Database, workspace_id: int, demand: Demand, window: Window) -> str:
        """The node an advance reservation will run on: its own, or, when that one was drained or
        lost since, another that can hold it over ``window`` (SchedulingFailed when none can)."""
        (node,) = db.execute("select node from pool_placements where workspace_id = ?", [workspace_id]).fetchone()
        loads = self.loads(db, window)
        if any(load.name == node and load.usable for load in loads):
            return node
        (chosen,) = placement.place_group([load for load in loads if load.name != node], demand, 1, self._policy)
        db.execute("update pool_placements set node = ? where workspace_id = ?", [chosen, workspace_id])
        return chosen

    def set_end(self, db: Database, workspace_id: int, end: datetime) -> None:
        """A workspace's lease now ends at ``end``: refused (SchedulingFailed) when its node is booked
        for part of the longer lease (a reservation starts before it would end)."""
        row = db.execute(
            "select node, ends_at from pool_placements where workspace_id = ? and held", [workspace_id]
        ).fetchone()
        if row is None:
            return
        node, ends = row
        db.execute("update pool_placements set ends_at = ? where workspace_id = ?", [timestamp(end), workspace_id])
        if ends is not None and timestamp(end) > ends:
            load = next(load for load in self.loads(db, Window(parse_timestamp(ends), end)) if load.name == node)
            if load.free_memory_mb < 0 or load.free_cpus < 0:
                raise SchedulingFailed(
                    f"node {node} is booked (an advance reservation) before {timestamp(end)}; the lease still ends"
                    f" at {ends}"
                )

    def _fits(self, db: Database, demand: Demand, count: int) -> Callable[[Window], bool]:
        def fits(candidate: Window) -> bool:
            return sum(load.room_for(demand) for load in self.loads(db, candidate)) >= count

        return fits

    def _earliest(self, db: Database, demand: Demand, count: int, window: Window) -> str:
        found = earliest_fit(db, window, self._fits(db, demand, count), EARLIEST_HORIZON)
        if found is None:
            return f"no window of {window.length} fits within {EARLIEST_HORIZON.days} days"
        return f"the earliest window of {window.length} that fits starts at {timestamp(found.start)}"
