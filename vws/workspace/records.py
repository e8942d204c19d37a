"""Workspace records: the committed snapshot, its row, state changes and who hears of them.

Every state change is one SQLite transaction that also appends to ``workspace_events``;
the listeners (notifications, accounting, the lease sweeper) run after it commits. Only
writers take a workspace's lock, so reads never wait behind a slow destroy (Nimbus
issue #102).
"""

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlite_utils import Database

from vws.clock import Clock, parse_timestamp, timestamp
from vws.errors import UnknownResource
from vws.pool.machine import NetworkLease, Placement
from vws.pool.manager import PoolManager
from vws.store import rows
from vws.store.database import Store
from vws.workspace.caller import Caller
from vws.workspace.gates import NodeGates
from vws.workspace.request import DeploymentRequest
from vws.workspace.states import Op, State

# NetworkLease is the pool's: a snapshot's leases are named here for the front ends.
__all__ = ["Failure", "Listener", "Location", "NetworkLease", "Records", "Workspace", "log_change", "record_event"]

log = logging.getLogger(__name__)
# One INFO line per state change, on a logger of its own so an admin can route it.
states_log = logging.getLogger("vws.states")

# The most snapshots kept for reuse (live ones only): an admin's list of more rebuilds them.
_KEPT = 4096


@dataclass(frozen=True)
class Workspace:
    """A read-only snapshot of one workspace as last committed."""

    id: int
    owner: str
    state: State
    fault: str | None  # why it is Corrupted
    fault_at: datetime | None  # when that happened
    node: str | None
    domain: str | None
    created_at: datetime
    started_at: datetime | None
    termination_time: datetime
    request: DeploymentRequest
    leases: tuple[NetworkLease, ...]
    group_key: str | None
    ensemble_key: str | None
    work_owed: bool  # background work is owed to it: its bring-up, or an unpropagation
    operation: Op | None  # driving its domain now (or when the service was cut off)
    revision: int  # goes up with every change to its row or its leases (see the store's m024)

    @property
    def duration(self) -> timedelta:
        return self.termination_time - self.created_at

    @property
    def placement(self) -> Placement:
        assert self.node and self.domain
        return Placement(self.id, self.node, self.domain, self.leases)


Listener = Callable[[Workspace], None]


@dataclass(frozen=True)
class Failure:
    """A workspace marked Corrupted: when, why, and whether it still lives."""

    workspace_id: int
    owner: str
    at: datetime
    reason: str
    live: bool


class Location(NamedTuple):
    """Where a live workspace runs and in which state: all reconciliation compares."""

    id: int
    state: State
    node: str | None
    domain: str | None


class Records:
    """Reads snapshots, commits state changes, tells the listeners, and hands out the locks."""

    def __init__(self, store: Store, pool: PoolManager, clock: Clock) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock
        self.gates = NodeGates()  # closed on a node while a restart takes it up
        self._listeners: list[Listener] = []
        # Per-workspace locks with how many threads hold or wait for each: an entry lives only
        # while it is in use, so one taken after the workspace is gone (a bring-up that finds it
        # destroyed) is not kept for ever.
        self._locks: dict[int, tuple[threading.Lock, int]] = {}
        self._locks_guard = threading.Lock()
        # Committed snapshots by workspace id, reused while their revision is the stored one:
        # pollers read the same workspaces again and again, and building one costs more than
        # reading its revision.
        self._kept: dict[int, Workspace] = {}

    def add_listener(self, listener: Listener) -> None:
        """``listener(workspace)`` runs after every committed state change."""
        self._listeners.append(listener)

    def get(self, caller: Caller, workspace_id: int) -> Workspace:
        workspace = self.snapshot(workspace_id)
        if workspace.state.gone or not (caller.admin or caller.identity == workspace.owner):
            # The same answer whether it never existed or belongs to someone else.
            raise UnknownResource(f"no workspace with key {workspace_id}")
        return workspace

    def workspaces(self, caller: Caller, limit: int | None = None) -> list[Workspace]:
        """The caller's live workspaces (an admin sees every one), the oldest first; at most ``limit``."""
        where = "destroyed_at is null" + ("" if caller.admin else " and owner = ?")
        parameters: list[object] = [] if caller.admin else [caller.identity]
        with self._store.reading() as db:
            found = db.execute(
                f"select id, revision from workspaces where {where} order by id limit ?", [*parameters, limit or -1]
            )
            return self._snapshots(db, found.fetchall())

    def locations(self, node: str) -> list[Location]:
        """The state and domain of every live workspace on ``node``, read without building its snapshot."""
        with self._store.reading() as db:
            found = db.execute(
                "select id, state, node, domain from workspaces where node = ? and destroyed_at is null order by id",
                [node],
            )
            return [Location(key, State(state), node, domain) for key, state, node, domain in found]

    def nodes_in_use(self) -> set[str]:
        """The nodes live workspaces are placed on."""
        with self._store.reading() as db:
            found = db.execute("select distinct node from workspaces where destroyed_at is null and node is not null")
            return {node for (node,) in found}

    def unfinished(self, node: str) -> list[Workspace]:
        """Live workspaces on ``node`` whose work a crash may have cut off: being destroyed or
        unpropagated, owed background work, or an operation under way. Found without reading
        every live workspace."""
        query = (
            "select id, revision from workspaces where node = ? and destroyed_at is null"
            " and (work_owed or operation is not null or state in (?, ?)) order by id"
        )
        with self._store.reading() as db:
            found = db.execute(query, [node, State.CANCELLED.value, State.UNPROPAGATING.value])
            return self._snapshots(db, found.fetchall())

    def ended(self, caller: Caller, since: datetime) -> list[Workspace]:
        """The caller's workspaces destroyed at or after ``since`` (an admin's: everyone's)."""
        where = "destroyed_at >= ?" + ("" if caller.admin else " and owner = ?")
        parameters = [timestamp(since)] + ([] if caller.admin else [caller.identity])
        with self._store.reading() as db:
            found = db.execute(f"select id, revision from workspaces where {where} order by id", parameters)
            return self._snapshots(db, found.fetchall())

    def snapshot(self, workspace_id: int) -> Workspace:
        with self._store.reading() as db:
            return self._read(db, [workspace_id])[0]

    def _read(self, db: Database, ids: list[int]) -> list[Workspace]:
        """The workspaces ``ids``, in that order, as ``db`` sees them."""
        query = "select id, revision from workspaces where id in (select value from json_each(?))"
        revisions = dict(db.execute(query, [json.dumps(ids)]).fetchall())
        missing = [key for key in ids if key not in revisions]
        if missing:
            raise UnknownResource(f"no workspace with key {missing[0]}")
        return self._snapshots(db, [(key, revisions[key]) for key in ids])

    def _snapshots(self, db: Database, revisions: list[tuple[int, int]]) -> list[Workspace]:
        """The snapshots of workspaces at (id, revision), in that order: kept ones reused, the rest built."""
        found: dict[int, Workspace] = {}
        stale: list[int] = []
        for key, revision in revisions:
            known = self._kept.get(key)
            if known is not None and known.revision == revision:
                found[key] = known
            else:
                stale.append(key)
        if stale:
            query = "select * from workspaces where id in (select value from json_each(?))"
            built = self._from_rows(db, rows.select(db, query, [json.dumps(stale)]))
            found.update((workspace.id, workspace) for workspace in built)
            if self._store.shows_only_commits(db):  # never what a transaction may yet roll back
                self._keep(built)
        return [found[key] for key, _ in revisions]

    def _keep(self, snapshots: list[Workspace]) -> None:
        if len(self._kept) + len(snapshots) > _KEPT:
            self._kept.clear()
        self._kept.update((workspace.id, workspace) for workspace in snapshots if not workspace.state.gone)

    def commit(
        self,
        workspace_id: int,
        state: State,
        *,
        fault: str | None = None,
        started: bool = False,
        gone: bool = False,
        release: bool = False,
        work_owed: bool | None = None,
        request: DeploymentRequest | None = None,
        reason: str = "-",
    ) -> Workspace:
        """Record the new state; ``gone`` or ``release`` give back node share, addresses and disks.

        ``work_owed`` says whether background work on it is still owed (None: unchanged); none
        is owed to a workspace that is Corrupted or gone. ``request`` replaces the stored
        request (a shutdown-save's new target), in the same transaction. ``reason`` (what
        made the change: an operation, a recovery) goes in the state-change log line; a
        ``fault`` is its reason when there is one.
        """
        now = self._clock.now()
        changes: dict[str, object] = {
            "operation": None,
            "state": state.value,
            "fault": fault,
            "fault_at": timestamp(now) if fault else None,
        }
        if work_owed is None and state in (State.CORRUPTED, State.DESTROYED):
            work_owed = False
        if work_owed is not None:
            changes["work_owed"] = int(work_owed)
        if started:
            changes["started_at"] = timestamp(now)
        if gone:
            changes["destroyed_at"] = timestamp(now)
        if release:
            changes["released_at"] = timestamp(now)
        if request is not None:
            changes["request"] = request.to_json()
        with self._store.transaction() as db:
            (before,) = db.execute("select state from workspaces where id = ?", [workspace_id]).fetchone()
            rows.update(db, "workspaces", workspace_id, changes)
            record_event(db, workspace_id, now, state, fault)
            if gone:
                self._pool.forget(db, workspace_id)
            elif release:
                self._pool.release_leases(db, workspace_id)
            (workspace,) = self._read(db, [workspace_id])
        if gone:
            self._kept.pop(workspace_id, None)
        elif self._store.shows_only_commits(db):  # committed, not inside an outer transaction
            self._keep([workspace])
        log_change(workspace_id, before, state, fault or reason)
        self._tell([workspace])
        return workspace

    def begin(self, workspace_id: int, op: Op) -> None:
        """Record that ``op`` now drives the workspace's domain, until the commit of its outcome."""
        self._set_operation(workspace_id, op)

    def abandon(self, workspace_id: int) -> None:
        """Forget an operation cut off before it changed anything: the committed state stands."""
        self._set_operation(workspace_id, None)

    def _set_operation(self, workspace_id: int, op: Op | None) -> None:
        with self._store.transaction() as db:
            rows.update(db, "workspaces", workspace_id, {"operation": op.value if op else None})

    def notify(self, ids: list[int]) -> list[Workspace]:
        """Tell every listener the workspaces' committed state; returns their snapshots."""
        with self._store.reading() as db:
            snapshots = self._read(db, ids)
        self._tell(snapshots)
        return snapshots

    def _tell(self, snapshots: list[Workspace]) -> None:
        for workspace in snapshots:
            for listener in self._listeners:
                try:
                    listener(workspace)
                except Exception:
                    log.exception("state listener failed for workspace %s", workspace.id)

    @contextmanager
    def locked(self, workspace_id: int) -> Iterator[None]:
        """Held by whatever changes the workspace, from its snapshot to its commit; taken once its
        node's gate is open (see ``gates``)."""
        if not self.gates.all_open:
            self._await_node(workspace_id)
        with self._locks_guard:
            lock, users = self._locks.get(workspace_id, (threading.Lock(), 0))
            self._locks[workspace_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._locks_guard:
                lock, users = self._locks.pop(workspace_id)
                if users > 1:
                    self._locks[workspace_id] = (lock, users - 1)

    def _await_node(self, workspace_id: int) -> None:
        with self._store.reading() as db:
            found = db.execute("select node from workspaces where id = ?", [workspace_id]).fetchone()
        node = found[0] if found else None
        if not self.gates.passes(node):
            log.info("workspace %s: waiting until node %s is taken up after the restart", workspace_id, node)
            self.gates.wait(node)

    def locks_in_use(self) -> int:
        """How many workspaces' locks are held or waited for now (bookkeeping a churn must give back)."""
        with self._locks_guard:
            return len(self._locks)

    def kept(self) -> int:
        return len(self._kept)

    def failures(self, limit: int) -> list[Failure]:
        """The ``limit`` latest workspaces marked Corrupted, the newest first, destroyed ones included."""
        with self._store.reading() as db:
            found = db.execute(
                "select e.workspace_id, w.owner, e.at, e.detail, w.destroyed_at is null from workspace_events e"
                " join workspaces w on w.id = e.workspace_id where e.state = ? order by e.id desc limit ?",
                [State.CORRUPTED.value, limit],
            ).fetchall()
        return [
            Failure(id_, owner, parse_timestamp(at), detail or "", bool(live)) for id_, owner, at, detail, live in found
        ]

    def census(self) -> dict[str, int]:
        """How many live workspaces are in each state (every state but destroyed, zero included)."""
        counts = dict.fromkeys((state.value for state in State if not state.gone), 0)
        with self._store.reading() as db:
            query = "select state, count(*) from workspaces where destroyed_at is null group by state"
            counts.update(db.execute(query).fetchall())
        return counts

    def _from_rows(self, db: Database, found: list[dict]) -> list[Workspace]:
        """Snapshots of workspace rows, with every one's leases read in one query."""
        leases = self._pool.leases(db, [row["id"] for row in found])
        return [_snapshot(row, leases.get(row["id"], ())) for row in found]


def _snapshot(row: dict, leases: tuple[NetworkLease, ...]) -> Workspace:
    return Workspace(
        id=row["id"],
        owner=row["owner"],
        state=State(row["state"]),
        fault=row["fault"],
        fault_at=parse_timestamp(row["fault_at"]) if row["fault_at"] else None,
        node=row["node"],
        domain=row["domain"],
        created_at=parse_timestamp(row["created_at"]),
        started_at=parse_timestamp(row["started_at"]) if row["started_at"] else None,
        termination_time=parse_timestamp(row["termination_time"]),
        request=DeploymentRequest.from_json(row["request"]),
        leases=leases,
        group_key=row["group_key"],
        ensemble_key=row["ensemble_key"],
        work_owed=bool(row["work_owed"]),
        operation=Op(row["operation"]) if row["operation"] else None,
        revision=row["revision"],
    )


def log_change(workspace_id: int, before: str, after: State, reason: str) -> None:
    """The state change's line (``before`` is "new" for a workspace just created); its fields ride on the record."""
    states_log.info(
        'workspace=%s from=%s to=%s reason="%s"',
        workspace_id,
        before,
        after.value,
        reason,
        extra={"workspace_id": workspace_id, "from_state": before, "to_state": after.value, "reason": reason},
    )


def record_event(db: Database, workspace_id: int, at: datetime, state: State, detail: str | None) -> None:
    rows.insert(
        db,
        "workspace_events",
        {"workspace_id": workspace_id, "at": timestamp(at), "state": state.value, "detail": detail},
    )
