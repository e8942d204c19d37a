"""WorkspaceManager: create, operate and destroy workspaces.

Every state change is a SQLite transaction; reservations (node memory and CPUs,
network leases) are taken in the same transaction that records the workspace and
are released in the one that records it gone. The hypervisor is driven between
transactions, under a per-workspace lock that only writers take, so reads never
wait behind a slow destroy (Nimbus issue #102).

Creation answers as soon as the reservation is committed: the workspaces are
Unpropagated, and deployer threads bring them to their initial state (copying a
missing image can take minutes). A deployment that fails gives back what it
reserved and leaves its workspaces Corrupted with the reason; destroying a
workspace while its image is being copied abandons the copy.
"""

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlite_utils import Database

from vws.clock import Clock, parse_timestamp, timestamp
from vws.config import PolicyConfig
from vws.errors import (
    BackendError,
    Cancelled,
    IllegalState,
    InvalidMetadata,
    InvalidTerminationTime,
    OperationDisabled,
    RequestDenied,
    UnknownResource,
    VwsError,
)
from vws.pool.machine import NetworkLease, Placement
from vws.pool.manager import PoolManager
from vws.pool.progress import Progress
from vws.store import rows
from vws.store.database import Store
from vws.workspace.caller import SERVICE, Caller
from vws.workspace.request import DeploymentRequest
from vws.workspace.states import INITIAL_OPS, Action, Op, State, Transition, transition

log = logging.getLogger(__name__)


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
    deploying: bool  # background work is owed: its bring-up, or an unpropagation

    @property
    def duration(self) -> timedelta:
        return self.termination_time - self.created_at

    @property
    def placement(self) -> Placement:
        assert self.node and self.domain
        return Placement(self.id, self.node, self.domain, self.leases)


Listener = Callable[[Workspace], None]
# (db, caller, request, duration), inside the reservation transaction; raising refuses.
AdmissionCheck = Callable[[Database, Caller, DeploymentRequest, timedelta], None]


@dataclass(frozen=True)
class Propagation:
    """How far the copy of a workspace's image to its node has got."""

    node: str
    done_bytes: int
    total_bytes: int


class WorkspaceManager:
    def __init__(self, store: Store, pool: PoolManager, clock: Clock, policy: PolicyConfig, deployers: int = 2) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock
        self._policy = policy
        self._listeners: list[Listener] = []
        self._admission_checks: list[AdmissionCheck] = []
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="domain-events")
        self._deployers = ThreadPoolExecutor(max_workers=deployers, thread_name_prefix="deploy")
        # Workspaces a destroy is waiting for, and copies in flight: read by deployer threads.
        self._cancelled: set[int] = set()
        self._propagations: dict[int, Propagation] = {}
        self._closing = threading.Event()

    def add_listener(self, listener: Listener) -> None:
        """``listener(workspace)`` runs after every committed state change."""
        self._listeners.append(listener)

    # ---- creation ---------------------------------------------------------------

    def create(self, caller: Caller, request: DeploymentRequest) -> list[Workspace]:
        """Place and reserve ``node_number`` workspaces, or none; they are Unpropagated now
        and reach the requested initial state in the background."""
        duration = self._check_policy(caller, request)
        return self._deploy([self._snapshot(workspace_id) for workspace_id in self._reserve(caller, request, duration)])

    def _deploy(self, workspaces: list[Workspace]) -> list[Workspace]:
        """Hand the workspaces to a deployer when a bring-up is owed; returns them."""
        if any(workspace.deploying for workspace in workspaces):
            self._in_background(self._bring_up, [workspace.id for workspace in workspaces])
        return workspaces

    def _in_background(self, work: Callable[..., None], *args: object) -> None:
        """Run ``work`` on a deployer thread; what it fails to handle is logged, not lost."""

        def logged() -> None:
            try:
                work(*args)
            except Exception:
                log.exception("background work %s%s failed", work.__name__, args)

        self._deployers.submit(logged)

    def _bring_up(self, ids: list[int]) -> None:
        """Take reserved workspaces to their initial states, stage by stage.

        Every member is propagated before any is started, so a group or ensemble runs
        together or not at all: one failure abandons them all. A member destroyed
        meanwhile is simply left out.
        """
        plans = {workspace_id: INITIAL_OPS[self._snapshot(workspace_id).request.initial_state] for workspace_id in ids}
        try:
            for stage in range(max(len(ops) for ops in plans.values())):
                for workspace_id, ops in plans.items():
                    if stage < len(ops):
                        self._advance(workspace_id, ops[stage], last=stage == len(ops) - 1)
        except _Interrupted:
            pass  # the service is stopping; recovery takes the deployment up at the next start
        except _DeploymentFailed as failure:
            self._abandon(ids, failure)

    def _advance(self, workspace_id: int, op: Op, last: bool) -> None:
        """One step of a bring-up; the last one's commit also says nothing more is owed."""
        if self._closing.is_set():
            raise _Interrupted
        try:
            self._apply(workspace_id, op, owed=False if last else None, failure_corrupts=False)
        except _Interrupted:
            raise
        except (Cancelled, IllegalState):
            if self._being_destroyed(workspace_id):
                return
            raise _DeploymentFailed(workspace_id, "its state changed while it was being deployed") from None
        except VwsError as exc:
            raise _DeploymentFailed(workspace_id, exc.description) from None
        except Exception as exc:  # a deployer thread has nobody else to tell
            log.exception("deployment of workspace %s failed unexpectedly", workspace_id)
            raise _DeploymentFailed(workspace_id, f"internal error: {type(exc).__name__}") from None

    def _being_destroyed(self, workspace_id: int) -> bool:
        return workspace_id in self._cancelled or self._snapshot(workspace_id).state in (
            State.CANCELLED,
            State.DESTROYED,
        )

    def _abandon(self, ids: list[int], failure: "_DeploymentFailed") -> None:
        """Give back what a failed deployment holds; its workspaces stay, Corrupted, with the reason."""
        log.warning("deployment of workspace %s failed: %s", failure.workspace_id, failure.reason)
        for workspace_id in ids:
            reason = failure.reason
            if workspace_id != failure.workspace_id:
                reason = f"workspace {failure.workspace_id} of the same request failed: {reason}"
            with self._locked(workspace_id):
                workspace = self._snapshot(workspace_id)
                if workspace.state in (State.CANCELLED, State.DESTROYED):
                    continue
                try:
                    if workspace.node and workspace.domain:
                        self._pool.remove(workspace.node, workspace.domain)
                except VwsError as exc:  # its domain may live on: keep the addresses it may use
                    self._commit(workspace_id, State.CORRUPTED, fault=f"{reason}; cleanup failed: {exc.description}")
                    continue
                self._commit(workspace_id, State.CORRUPTED, fault=f"deployment failed: {reason}", release=True)

    def _check_policy(self, caller: Caller, request: DeploymentRequest) -> timedelta:
        policy = self._policy
        if caller.limited and not policy.limited_proxy_may_create:
            raise RequestDenied("a limited proxy may not create workspaces")
        if request.initial_state not in INITIAL_OPS:
            raise InvalidMetadata(f"unknown InitialState {request.initial_state!r}")
        if request.node_number < 1:
            raise InvalidMetadata("NodeNumber must be at least 1")
        if request.node_number > policy.max_group_size:
            raise RequestDenied(
                f"{request.node_number} workspaces requested; a group may have at most {policy.max_group_size}"
            )
        if request.machine.memory_mb < 1 or request.machine.vcpus < 1:
            raise InvalidMetadata("memory and CPU count must be positive")
        if policy.maximum_memory_mb and request.machine.memory_mb > policy.maximum_memory_mb:
            raise RequestDenied(
                f"{request.machine.memory_mb} MB requested; at most {policy.maximum_memory_mb} MB allowed"
            )
        duration = (
            request.duration if request.duration is not None else timedelta(seconds=policy.default_running_seconds)
        )
        maximum = timedelta(seconds=policy.maximum_running_seconds)
        if duration <= timedelta(0):
            raise InvalidMetadata("the requested duration must be positive")
        if duration > maximum:
            raise RequestDenied(f"running time {duration} exceeds the maximum {maximum}")
        return duration

    def _reserve(
        self,
        caller: Caller,
        request: DeploymentRequest,
        duration: timedelta,
        ensemble_key: str | None = None,
        prepare: Callable[[Database], None] | None = None,
    ) -> list[int]:
        now = self._clock.now()
        group = str(uuid.uuid4()) if request.node_number > 1 else None
        row = {
            "owner": caller.identity,
            "name": request.name,
            "state": State.UNPROPAGATED.value,
            "memory_mb": request.machine.memory_mb,
            "vcpus": request.machine.vcpus,
            "created_at": timestamp(now),
            "termination_time": timestamp(now + duration),
            "request": request.to_json(),
            "group_key": group,
            "ensemble_key": ensemble_key,
            # Ensemble members wait, held, until the ensemble is done.
            "deploying": int(ensemble_key is None and bool(INITIAL_OPS[request.initial_state])),
        }
        with self._store.transaction() as db:
            for check in self._admission_checks:
                check(db, caller, request, duration)
            self._pool.check_room(db, request.machine, request.node_number)  # before a row is written
            if prepare is not None:
                prepare(db)
            ids = [rows.insert(db, "workspaces", row) for _ in range(request.node_number)]
            if group and request.save_target:  # as in GT4, a base name: each member saves to it plus -<id>
                for workspace_id in ids:
                    own = replace(request, save_target=f"{request.save_target}-{workspace_id}")
                    rows.update(db, "workspaces", workspace_id, {"request": own.to_json()})
            placements = self._pool.place(db, ids, request.machine, allow_static=self._policy.allow_static_addresses)
            for placement in placements:
                rows.update(
                    db, "workspaces", placement.workspace_id, {"node": placement.node, "domain": placement.domain}
                )
                _record_event(db, placement.workspace_id, now, State.UNPROPAGATED, f"placed on {placement.node}")
        self._notify(ids)
        return ids

    # ---- hooks for quotas and ensembles (issue #5) ------------------------------------

    def add_admission_check(self, check: AdmissionCheck) -> None:
        """``check`` runs before every reservation, inside its transaction: raising reserves nothing."""
        self._admission_checks.append(check)

    def create_held(
        self,
        caller: Caller,
        request: DeploymentRequest,
        ensemble_key: str,
        prepare: Callable[[Database], None] | None = None,
    ) -> list[Workspace]:
        """Reserve and place like ``create``, but leave the workspaces Unpropagated until released.

        ``prepare(db)`` runs inside the reservation's transaction once every check has passed,
        before the workspaces are written (a new ensemble's own row): a refusal writes nothing.
        """
        duration = self._check_policy(caller, request)
        reserved = self._reserve(caller, request, duration, ensemble_key, prepare)
        return [self._snapshot(workspace_id) for workspace_id in reserved]

    def release_held(self, ids: list[int]) -> list[Workspace]:
        """Bring held workspaces up together, in the background: every one reaches its initial
        state, or all end Corrupted with what they held given back."""
        with self._store.transaction() as db:
            db.execute(
                f"update workspaces set deploying = 1 where state = ? and id in ({', '.join('?' * len(ids))})",
                [State.UNPROPAGATED.value, *ids],
            )
        return self._deploy([self._snapshot(workspace_id) for workspace_id in ids])

    # ---- operations ---------------------------------------------------------------

    def get(self, caller: Caller, workspace_id: int) -> Workspace:
        workspace = self._snapshot(workspace_id)
        if workspace.state.gone or not (caller.admin or caller.identity == workspace.owner):
            # The same answer whether it never existed or belongs to someone else.
            raise UnknownResource(f"no workspace with key {workspace_id}")
        return workspace

    def workspaces(self, caller: Caller) -> list[Workspace]:
        """The caller's live workspaces (an admin sees every one)."""
        where = "destroyed_at is null" + ("" if caller.admin else " and owner = ?")
        with self._store.reading() as db:
            found = rows.select(
                db, f"select * from workspaces where {where} order by id", [] if caller.admin else [caller.identity]
            )
            return [self._from_row(db, row) for row in found]

    def start(self, caller: Caller, workspace_id: int) -> Workspace:
        return self._operate(caller, workspace_id, Op.START)

    def shutdown(
        self, caller: Caller, workspace_id: int, op: Op = Op.SHUTDOWN, save_target: str | None = None
    ) -> Workspace:
        """``save_target`` (with READY_FOR_TRANSPORT) replaces where the disk is saved, for good."""
        return self._operate(caller, workspace_id, op, save_target)

    def destroy(self, caller: Caller, workspace_id: int) -> Workspace:
        return self._operate(caller, workspace_id, Op.DESTROY)

    def _operate(self, caller: Caller, workspace_id: int, op: Op, save_target: str | None = None) -> Workspace:
        workspace = self.get(caller, workspace_id)
        if op is not Op.DESTROY and self._clock.now() >= workspace.termination_time:
            raise OperationDisabled(f"the lease of workspace {workspace_id} has ended")
        return self._apply(workspace_id, op, save_target=save_target)

    def _apply(
        self,
        workspace_id: int,
        op: Op,
        owed: bool | None = None,
        *,
        failure_corrupts: bool = True,
        save_target: str | None = None,
    ) -> Workspace:
        """Check the transition, drive the hypervisor, commit the new state (and ``owed``).

        A hypervisor failure makes the workspace Corrupted, unless the caller (a bring-up,
        which gives back what the workspace holds) records that itself.
        """
        if op is Op.DESTROY:
            return self._destroy(workspace_id)
        with self._locked(workspace_id):
            workspace = self._snapshot(workspace_id)
            step = transition(workspace.state, op)
            if step.via is not None:  # an unpropagation: what can be refused now is refused now
                assert workspace.domain
                request = replace(workspace.request, save_target=save_target or workspace.request.save_target)
                self._pool.check_save_target(workspace.domain, request.save_target)
                committed = self._commit(workspace_id, step.via, owed=True, request=request)
                self._in_background(self._finish, workspace_id, step)
                return committed
            try:
                for action in step.actions:
                    self._perform(action, workspace)
            except BackendError as exc:
                if failure_corrupts:
                    self._commit(workspace_id, State.CORRUPTED, fault=exc.description)
                raise
            return self._commit(workspace_id, step.target, started=op is Op.START, owed=owed)

    def _finish(self, workspace_id: int, step: Transition) -> None:
        """The background half of a transition that waits in ``step.via``; a destroy may come first."""
        with self._locked(workspace_id):
            workspace = self._snapshot(workspace_id)
            if workspace.state is not step.via:
                return
            try:
                for action in step.actions:
                    self._perform(action, workspace)
            except Exception as exc:  # whatever it was, the client must see it in currentState
                if not isinstance(exc, VwsError):
                    log.exception("%s of workspace %s failed unexpectedly", step.op.value, workspace_id)
                reason = exc.description if isinstance(exc, VwsError) else f"internal error: {type(exc).__name__}"
                self._commit(workspace_id, State.CORRUPTED, fault=reason)
                return
            self._commit(workspace_id, step.target, owed=False)

    def _destroy(self, workspace_id: int) -> Workspace:
        """Remove the workspace; a copy of its image in flight is abandoned rather than waited for."""
        self._cancelled.add(workspace_id)
        if workspace_id in self._propagations:
            log.info("workspace %s: destroyed while its image is copied; abandoning the copy", workspace_id)
        try:
            with self._locked(workspace_id):
                workspace = self._snapshot(workspace_id)
                transition(workspace.state, Op.DESTROY)
                return self._remove(workspace)
        finally:
            self._cancelled.discard(workspace_id)

    def _remove(self, workspace: Workspace) -> Workspace:
        self._commit(workspace.id, State.CANCELLED)
        if workspace.node and workspace.domain:
            # If this fails the workspace stays Cancelled and keeps its leases, so an
            # address is never handed out while a domain may still be using it.
            self._pool.remove(workspace.node, workspace.domain)
        return self._commit(workspace.id, State.DESTROYED, gone=True)

    def _perform(self, action: Action, workspace: Workspace) -> None:
        node, domain = workspace.node, workspace.domain
        assert node and domain
        match action:
            case Action.DEFINE:
                try:
                    self._pool.define(workspace.placement, workspace.request.machine, self._watch(workspace.id, node))
                finally:
                    self._propagations.pop(workspace.id, None)
            case Action.START:
                self._pool.start(node, domain)
            case Action.SHUTDOWN:
                self._pool.shutdown(node, domain)
            case Action.SUSPEND:
                self._pool.suspend(node, domain)
            case Action.RESUME:
                self._pool.resume(node, domain)
            case Action.REBOOT:
                self._pool.reboot(node, domain)
            case Action.UNPROPAGATE:
                self._pool.unpropagate(node, domain, workspace.request.save_target)
            case Action.REMOVE:
                self._pool.remove(node, domain)

    def _watch(self, workspace_id: int, node: str) -> Progress:
        """The progress callback of one workspace's propagation: records it, logs every tenth
        (every 64 MB when the size is not known yet: total 0), and stops the copy when a
        destroy is waiting or the service is stopping."""
        logged = [-1]

        def progress(done: int, total: int) -> None:
            if self._closing.is_set():
                raise _Interrupted
            if workspace_id in self._cancelled:
                raise Cancelled(f"workspace {workspace_id} is being destroyed")
            self._propagations[workspace_id] = Propagation(node, done, total)
            step = 10 * done // total if total > 0 else done >> 26
            if step != logged[0]:
                logged[0] = step
                if total > 0:
                    log.info("workspace %s: image to %s, %d%% of %d MB", workspace_id, node, 10 * step, total >> 20)
                else:
                    log.info("workspace %s: image to %s, %d MB so far", workspace_id, node, done >> 20)

        return progress

    def propagation(self, workspace_id: int) -> Propagation | None:
        """How far the copy of the workspace's image has got, while one runs."""
        return self._propagations.get(workspace_id)

    # ---- leases ---------------------------------------------------------------------

    def set_termination_time(self, caller: Caller, workspace_id: int, when: datetime | None) -> Workspace:
        """Move the end of the lease within policy; a past time ends it at the next sweep."""
        workspace = self.get(caller, workspace_id)
        if when is None:
            raise InvalidTerminationTime("a workspace lease cannot be made infinite")
        latest = workspace.created_at + timedelta(seconds=self._policy.maximum_running_seconds)
        if when > latest:
            raise InvalidTerminationTime(f"termination time after {timestamp(latest)} exceeds the maximum running time")
        with self._store.transaction() as db:
            rows.update(db, "workspaces", workspace_id, {"termination_time": timestamp(when)})
        self._notify([workspace_id])
        return self._snapshot(workspace_id)

    def next_termination(self) -> datetime | None:
        with self._store.reading() as db:
            row = db.execute("select min(termination_time) from workspaces where destroyed_at is null").fetchone()
        return parse_timestamp(row[0]) if row[0] else None

    def expire_due(self) -> list[int]:
        """Destroy every workspace whose lease has ended, shut down first unless its
        ShutdownMechanism is Trash; returns their ids."""
        now = timestamp(self._clock.now())
        with self._store.reading() as db:
            due = [
                row[0]
                for row in db.execute(
                    "select id from workspaces where destroyed_at is null and termination_time <= ?", [now]
                )
            ]
        for workspace_id in due:
            self._expire(workspace_id)
        return due

    def _expire(self, workspace_id: int) -> None:
        workspace = self._snapshot(workspace_id)
        try:
            if workspace.state in (State.RUNNING, State.PAUSED) and not workspace.request.trash_at_shutdown:
                self._apply(workspace_id, Op.SHUTDOWN)
        except VwsError as exc:
            log.warning("graceful shutdown of expired workspace %s failed: %s", workspace_id, exc)
        self._quietly(workspace_id, Op.DESTROY)

    # ---- reconciliation with what libvirt runs ----------------------------------------

    def recover(self) -> list[str]:
        """At start-up, before serving: finish what a crash cut off half-way, then reconcile.

        A destroy that was under way is completed. A deployment still owed is started
        again from its reservation: whatever it had put on the node is removed first, so
        a half-copied image or a half-defined domain never counts as done.
        """
        findings = []
        owed: dict[str, list[int]] = {}
        for workspace in self.workspaces(SERVICE):
            if workspace.state is State.CANCELLED:
                findings.append(f"workspace {workspace.id}: its destroy was cut off; finished")
                self._quietly(workspace.id, Op.DESTROY)
            elif workspace.state is State.UNPROPAGATING:
                findings.append(f"workspace {workspace.id}: its unpropagation was cut off; started again")
                # Shutting down a domain that is already off returns at once.
                self._in_background(self._finish, workspace.id, transition(State.RUNNING, Op.READY_FOR_TRANSPORT))
            elif workspace.deploying:
                findings.append(f"workspace {workspace.id}: its deployment was cut off; started again")
                self._reset(workspace)
                owed.setdefault(workspace.group_key or workspace.ensemble_key or str(workspace.id), []).append(
                    workspace.id
                )
        for finding in findings:
            log.warning("recovery: %s", finding)
        findings += self.reconcile()
        for ids in owed.values():
            self._in_background(self._bring_up, ids)
        return findings

    def _reset(self, workspace: Workspace) -> None:
        """Back to a bare reservation: the domain and its files go, the leases stay."""
        with self._locked(workspace.id):
            try:
                if workspace.node and workspace.domain:
                    self._pool.remove(workspace.node, workspace.domain)
            except VwsError as exc:
                self._commit(workspace.id, State.CORRUPTED, fault=f"recovery could not clean up: {exc.description}")
                return
            if workspace.state is not State.UNPROPAGATED:
                self._commit(workspace.id, State.UNPROPAGATED)

    def _quietly(self, workspace_id: int, op: Op) -> None:
        try:
            self._apply(workspace_id, op)
        except VwsError:
            log.exception("could not %s workspace %s; will retry", op.value, workspace_id)

    def reconcile(self) -> list[str]:
        """Compare every settled workspace with its domain; returns what was found wrong.

        A domain that died or vanished behind the service's back makes its workspace
        Corrupted; domains vws owns that no live workspace claims are reported, and
        removed only when ``[pool] remove_unclaimed_domains`` says so. A mismatch is
        checked again under the workspace's lock, so an operation in flight (its domain
        already changed, its state not yet committed) is not mistaken for a failure.
        """
        actual = self._pool.domain_states()
        workspaces = self.workspaces(SERVICE)
        findings = [
            finding
            for workspace in workspaces
            if _domain_mismatch(workspace, actual)
            for finding in self._confirm_mismatch(workspace.id)
        ]
        claimed = {(workspace.node, workspace.domain) for workspace in workspaces}
        findings += [self._unclaimed(node, domain) for node, domain in actual if (node, domain) not in claimed]
        for finding in findings:
            log.warning("reconciliation: %s", finding)
        return findings

    def _unclaimed(self, node: str, domain: str) -> str:
        """Report a domain of ours that no live workspace claims; remove it only when configured."""
        finding = f"domain {domain} on {node} belongs to no live workspace"
        if not self._pool.removes_unclaimed:
            return finding + "; left alone"
        try:
            self._pool.remove(node, domain)
        except VwsError as exc:
            return finding + f"; removing it failed: {exc.description}"
        return finding + "; removed"

    def _confirm_mismatch(self, workspace_id: int) -> list[str]:
        with self._locked(workspace_id):
            workspace = self._snapshot(workspace_id)
            reason = _domain_mismatch(workspace, self._pool.domain_states())
            if reason is None:
                return []
            self._commit(workspace_id, State.CORRUPTED, fault=reason)
            return [f"workspace {workspace_id}: {reason}"]

    def on_domain_event(self, node: str, domain: str, event: str) -> None:
        """A lifecycle event from libvirt; handled off the event thread so it never waits on an operation."""
        self._events.submit(self._check_domain, node, domain, event)

    def _check_domain(self, node: str, domain: str, event: str) -> None:
        with self._store.reading() as db:
            found = rows.select(
                db, "select id from workspaces where node = ? and domain = ? and destroyed_at is null", [node, domain]
            )
        if not found:
            return
        workspace_id = found[0]["id"]
        with self._locked(workspace_id):  # after any operation on it has committed
            state = self._snapshot(workspace_id).state
            if event in _FATAL_EVENTS and state in (State.RUNNING, State.PAUSED):
                self._commit(workspace_id, State.CORRUPTED, fault=f"domain {domain} {event} unexpectedly")

    def close(self) -> None:
        """Stop deploying (a copy in flight stops at its next step) and handling events."""
        self._closing.set()
        self._deployers.shutdown(wait=True, cancel_futures=True)
        self._events.shutdown(wait=True)

    # ---- state and snapshots --------------------------------------------------------

    def mark_corrupted(self, workspace_id: int, reason: str) -> None:
        """Record that the domain died or vanished behind the service's back."""
        with self._locked(workspace_id):
            if not self._snapshot(workspace_id).state.gone:
                self._commit(workspace_id, State.CORRUPTED, fault=reason)

    def _commit(
        self,
        workspace_id: int,
        state: State,
        *,
        fault: str | None = None,
        started: bool = False,
        gone: bool = False,
        release: bool = False,
        owed: bool | None = None,
        request: DeploymentRequest | None = None,
    ) -> Workspace:
        """Record the new state; ``gone`` or ``release`` give back node share, addresses and disks.

        ``owed`` says whether background work on it is still owed (None: unchanged); none
        is owed to a workspace that is Corrupted or gone. ``request`` replaces the stored
        request (a shutdown-save's new target), in the same transaction.
        """
        now = self._clock.now()
        changes: dict[str, object] = {
            "state": state.value,
            "fault": fault,
            "fault_at": timestamp(now) if fault else None,
        }
        if owed is None and state in (State.CORRUPTED, State.DESTROYED):
            owed = False
        if owed is not None:
            changes["deploying"] = int(owed)
        if started:
            changes["started_at"] = timestamp(now)
        if gone:
            changes["destroyed_at"] = timestamp(now)
        if release:
            changes["released_at"] = timestamp(now)
        if request is not None:
            changes["request"] = request.to_json()
        with self._store.transaction() as db:
            rows.update(db, "workspaces", workspace_id, changes)
            _record_event(db, workspace_id, now, state, fault)
            if gone or release:
                self._pool.release_leases(db, workspace_id)
        if gone:
            with self._locks_guard:
                self._locks.pop(workspace_id, None)
        return self._notify([workspace_id])[0]

    def _notify(self, ids: list[int]) -> list[Workspace]:
        snapshots = [self._snapshot(workspace_id) for workspace_id in ids]
        for workspace in snapshots:
            for listener in self._listeners:
                try:
                    listener(workspace)
                except Exception:
                    log.exception("state listener failed for workspace %s", workspace.id)
        return snapshots

    def _snapshot(self, workspace_id: int) -> Workspace:
        with self._store.reading() as db:
            found = rows.select(db, "select * from workspaces where id = ?", [workspace_id])
            if not found:
                raise UnknownResource(f"no workspace with key {workspace_id}")
            return self._from_row(db, found[0])

    def _from_row(self, db: Database, row: dict) -> Workspace:
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
            leases=self._pool.leases(db, row["id"]),
            group_key=row["group_key"],
            ensemble_key=row["ensemble_key"],
            deploying=bool(row["deploying"]),
        )

    @contextmanager
    def _locked(self, workspace_id: int) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(workspace_id, threading.Lock())
        with lock:
            yield


# What libvirt should report for a domain whose workspace is in each settled state.
_EXPECTED_DOMAIN = {State.RUNNING: "running", State.PAUSED: "paused", State.PROPAGATED: "shutoff"}


def _domain_mismatch(workspace: Workspace, actual: dict[tuple[str, str], str]) -> str | None:
    """Why libvirt disagrees with a settled workspace, or None when it agrees."""
    expected = _EXPECTED_DOMAIN.get(workspace.state)
    found = actual.get((workspace.node or "", workspace.domain or ""), "missing")
    # An unreachable node says nothing about its domains: the pool marks the node
    # unavailable, and its workspaces keep their state until it answers again.
    if expected is None or found in (expected, "unreachable"):
        return None
    return f"libvirt reports domain {workspace.domain} {found}, expected {expected}"


_FATAL_EVENTS = frozenset({"stopped", "crashed", "undefined"})


class _Interrupted(Exception):
    """The service is stopping in the middle of a deployment."""


class _DeploymentFailed(Exception):
    def __init__(self, workspace_id: int, reason: str) -> None:
        super().__init__(reason)
        self.workspace_id = workspace_id
        self.reason = reason


def _record_event(db: Database, workspace_id: int, at: datetime, state: State, detail: str | None) -> None:
    rows.insert(
        db,
        "workspace_events",
        {"workspace_id": workspace_id, "at": timestamp(at), "state": state.value, "detail": detail},
    )
