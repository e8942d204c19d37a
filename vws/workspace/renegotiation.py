"""Renegotiating what a living workspace is granted: memory, vCPUs, CPU share, bandwidth.

Granted only within policy (the checks a create passes) and when the workspace's node has
room. One order, so that no two workspaces ever count on the same memory:

1. one transaction: the node holds the larger of the old and new allocation (the pool's
   ``reserve_resize``, which refuses when the node has not the room);
2. libvirt: the running guest gets it live where libvirt can (balloon, vCPU hot-plug,
   cputune, bandwidth) and its definition gets it in any case (see ``PoolManager.resize``);
   when libvirt cannot apply it live, it is refused, or applied from the next start if asked;
3. one transaction: the node holds the new allocation (or, from the next start, still the
   larger until then) and the workspace records it as granted.

A crash between 1 and 3 leaves the pool's record of step 1, which ``recover`` finishes at
start-up: the new allocation is applied again, or, if libvirt now refuses it, the old one
is restored, and the books follow what the domain has.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from vws.clock import Clock
from vws.config import PolicyConfig
from vws.errors import IllegalState, VwsError
from vws.pool.machine import Allocation, NicBandwidth
from vws.pool.manager import NEXT_START, PoolManager, Resize
from vws.store import rows
from vws.store.database import Store
from vws.workspace.allocation_policy import check_allocation
from vws.workspace.caller import Caller
from vws.workspace.records import Records, Workspace, record_event
from vws.workspace.states import State

log = logging.getLogger(__name__)

# A domain is defined in these: the allocation goes into its definition, and live if it runs.
RENEGOTIABLE = frozenset({State.PROPAGATED, State.RUNNING, State.PAUSED})

AllocationListener = Callable[[Workspace], None]


@dataclass(frozen=True)
class AllocationChange:
    """What a renegotiation asks for; None keeps that part as granted."""

    memory_mb: int | None = None
    vcpus: int | None = None
    cpu_percent: int | None = None
    bandwidth: tuple[NicBandwidth, ...] | None = None

    def applied_to(self, granted: Allocation) -> Allocation:
        changes = {name: value for name, value in self.__dict__.items() if value is not None}
        return replace(granted, **changes)


@dataclass(frozen=True)
class Renegotiated:
    workspace: Workspace  # as granted now
    outcome: str  # LIVE, DEFINED or NEXT_START (vws.pool.manager), or UNCHANGED


UNCHANGED = "unchanged"


class Renegotiation:
    def __init__(self, store: Store, pool: PoolManager, clock: Clock, policy: PolicyConfig, records: Records) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock
        self._policy = policy
        self._records = records
        self._listeners: list[AllocationListener] = []

    def add_listener(self, listener: AllocationListener) -> None:
        """``listener(workspace)`` runs after every granted renegotiation, with the new grant."""
        self._listeners.append(listener)

    def renegotiate(
        self, caller: Caller, workspace_id: int, change: AllocationChange, *, at_next_start: bool = False
    ) -> Renegotiated:
        with self._records.locked(workspace_id):
            workspace = self._records.get(caller, workspace_id)
            if workspace.state not in RENEGOTIABLE:
                raise IllegalState(
                    f"workspace {workspace_id} is {workspace.state.wire}: only a Propagated, Running or Paused"
                    " workspace can be renegotiated"
                )
            old = Allocation.of(workspace.request.machine)
            new = change.applied_to(old)
            check_allocation(self._policy, new.applied_to(workspace.request.machine))
            if new == old:
                return Renegotiated(workspace, UNCHANGED)
            with self._store.transaction() as db:
                resize = self._pool.reserve_resize(db, workspace_id, old, new, live=not at_next_start)
            try:
                outcome = self._pool.resize(resize, at_next_start=at_next_start)
            except VwsError:
                with self._store.transaction() as db:
                    self._pool.settle_resize(db, workspace_id, old)
                raise
            granted = self._grant(workspace, resize, outcome)
        self._tell(granted)
        return Renegotiated(granted, outcome)

    def recover(self, node: str) -> list[str]:
        """Finish every renegotiation on ``node`` a crash cut off between libvirt and the store."""
        findings = []
        for resize in (resize for resize in self._pool.pending_resizes() if resize.node == node):
            with self._records.locked(resize.workspace_id):
                workspace = self._records.snapshot(resize.workspace_id)
                try:
                    outcome = self._pool.resize(resize, at_next_start=not resize.live)
                except VwsError as exc:
                    findings.append(self._restore(resize, exc))
                    continue
                granted = self._grant(workspace, resize, outcome)
            findings.append(f"workspace {resize.workspace_id}: its renegotiation was cut off; finished ({outcome})")
            self._tell(granted)
        for finding in findings:
            log.warning("recovery: %s", finding)
        return findings

    def _restore(self, resize: Resize, error: VwsError) -> str:
        """The new allocation is refused now: the definition and the books go back to the old one."""
        try:
            self._pool.resize(replace(resize, old=resize.new, new=resize.old), at_next_start=True)
        except VwsError as exc:
            log.error("workspace %s: restoring its allocation failed: %s", resize.workspace_id, exc.description)
        with self._store.transaction() as db:
            self._pool.settle_resize(db, resize.workspace_id, resize.old)
        return f"workspace {resize.workspace_id}: its renegotiation was cut off and is refused now: {error.description}"

    def _grant(self, workspace: Workspace, resize: Resize, outcome: str) -> Workspace:
        machine = resize.new.applied_to(workspace.request.machine)
        request = replace(workspace.request, machine=machine)
        changes = {"memory_mb": machine.memory_mb, "vcpus": machine.vcpus, "request": request.to_json()}
        detail = f"renegotiated to {machine.memory_mb} MB, {machine.vcpus} vCPUs ({outcome})"
        with self._store.transaction() as db:
            self._pool.settle_resize(db, workspace.id, resize.new, deferred=outcome == NEXT_START)
            rows.update(db, "workspaces", workspace.id, changes)
            record_event(db, workspace.id, self._clock.now(), workspace.state, detail)
        return self._records.snapshot(workspace.id)

    def _tell(self, workspace: Workspace) -> None:
        for listener in self._listeners:
            try:
                listener(workspace)
            except Exception:
                log.exception("allocation listener failed for workspace %s", workspace.id)
