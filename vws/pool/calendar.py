"""The capacity calendar: what each node holds over a window of time.

Every placement holds its memory and CPUs from ``starts_at`` (null: since it was made) to
``ends_at`` (its lease's end). A node's load over a window is the peak of what overlaps it,
so an advance reservation for tomorrow leaves today free, and a best-effort request whose
lease would reach into a reservation sees it. A lease already past its end still counts,
for any window, until the sweeper has given it back.

``fitting`` answers a refusal and an availability question: the windows, from the one asked
for, that the nodes can hold, trying each moment some placement ends (when room appears).
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlite_utils import Database

from vws.clock import parse_timestamp, timestamp
from vws.pool.placement import NodeLoad

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
