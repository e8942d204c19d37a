"""WorkspaceManager: the one door into the workspace layer, for every front end.

The SOAP port types call it today, an EC2 front end next; each translates its wire into
these calls, so ownership, quotas, accounting and notifications are the same whichever
door a user came through. The work is done by the parts it wires together:

- records: the committed snapshots, state changes and their listeners, per-workspace locks
- creation: policy, admission checks and the reservation transaction
- deployers, deployment: the background threads and the bring-up to an initial state
- operations: start, shutdown, destroy (each a transition of the state machine)
- lifetime: termination times and lease expiry
- renegotiation: a living workspace's memory, vCPUs, CPU share and bandwidth
- reservations: advance reservations brought up in time for their start
- recovery, reconciliation, gates: a restart's cut-off work, node by node in the background,
  and agreement with libvirt
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlite_utils import Database

from vws.clock import Clock
from vws.config import PolicyConfig
from vws.pool.calendar import Window
from vws.pool.manager import PoolManager
from vws.store.database import Store
from vws.workspace.caller import Caller
from vws.workspace.creation import AdmissionCheck, Creation, Resolver
from vws.workspace.deployers import Deployers, Propagation
from vws.workspace.deployment import Deployment
from vws.workspace.lifetime import Lifetime
from vws.workspace.operations import Operations
from vws.workspace.reconciliation import Reconciliation
from vws.workspace.records import Failure, Listener, Records, Workspace
from vws.workspace.recovery import Recovery
from vws.workspace.renegotiation import AllocationChange, AllocationListener, Renegotiated, Renegotiation
from vws.workspace.request import DeploymentRequest, MachineRequest
from vws.workspace.reservations import Reservations
from vws.workspace.states import Op


class WorkspaceManager:
    def __init__(self, store: Store, pool: PoolManager, clock: Clock, policy: PolicyConfig, deployers: int = 2) -> None:
        self._records = Records(store, pool, clock)
        self._deployers = Deployers(deployers)
        self._operations = Operations(self._records, pool, clock, self._deployers)
        deployment = Deployment(self._records, pool, self._operations, self._deployers)
        self._creation = Creation(store, pool, clock, policy, self._records, deployment)
        self._lifetime = Lifetime(store, clock, policy, self._records, self._operations, pool)
        self._reconciliation = Reconciliation(store, pool, self._records)
        self._renegotiation = Renegotiation(store, pool, clock, policy, self._records)
        lead = timedelta(seconds=policy.reservation_lead_seconds)
        self._reservations = Reservations(store, pool, clock, lead, self._records, self._creation)
        self._recovery = Recovery(
            self._records,
            pool,
            self._deployers,
            self._operations,
            deployment,
            self._reconciliation,
            self._renegotiation,
        )

    # ---- hooks ----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """``listener(workspace)`` runs after every committed state change."""
        self._records.add_listener(listener)

    def add_admission_check(self, check: AdmissionCheck) -> None:
        """``check`` runs before every reservation, inside its transaction: raising reserves nothing."""
        self._creation.add_admission_check(check)

    def add_resolver(self, resolver: Resolver) -> None:
        """``resolver(request)`` runs before every reservation, outside any transaction: it may
        refuse the request, or return the one to create (an appliance's image for its descriptor)."""
        self._creation.add_resolver(resolver)

    def add_allocation_listener(self, listener: AllocationListener) -> None:
        """``listener(workspace)`` runs after every granted renegotiation, with the new grant."""
        self._renegotiation.add_listener(listener)

    # ---- creation -------------------------------------------------------------------

    def create(self, caller: Caller, request: DeploymentRequest) -> list[Workspace]:
        """Place and reserve ``node_number`` workspaces, or none; they are Unpropagated now
        and reach the requested initial state in the background."""
        return self._creation.create(caller, request)

    def create_held(
        self,
        caller: Caller,
        request: DeploymentRequest,
        ensemble_key: str,
        prepare: Callable[[Database], None] | None = None,
    ) -> list[Workspace]:
        """Reserve like ``create`` for an ensemble, but leave the workspaces Unpropagated until released."""
        return self._creation.create_held(caller, request, ensemble_key, prepare)

    def release_held(self, ids: list[int]) -> list[Workspace]:
        """Bring held workspaces up together: all reach their initial state, or all end Corrupted."""
        return self._creation.release_held(ids)

    # ---- reading --------------------------------------------------------------------

    def get(self, caller: Caller, workspace_id: int) -> Workspace:
        """The workspace, if it lives and the caller owns it (or is an admin)."""
        return self._records.get(caller, workspace_id)

    def workspaces(self, caller: Caller, limit: int | None = None) -> list[Workspace]:
        """The caller's live workspaces (an admin sees every one), the oldest first; at most ``limit``."""
        return self._records.workspaces(caller, limit)

    def ended(self, caller: Caller, since: datetime) -> list[Workspace]:
        """The caller's workspaces destroyed since ``since``: an EC2 terminated instance stays visible a while."""
        return self._records.ended(caller, since)

    def bookkeeping(self) -> dict[str, int]:
        """What the layer keeps in memory per workspace in progress; all zero once nothing is."""
        return {"locks in use": self._records.locks_in_use(), **self._deployers.tracked()}

    def snapshots_kept(self) -> int:
        """How many committed snapshots are kept for reuse: live workspaces read lately, never a gone one."""
        return self._records.kept()

    def census(self) -> dict[str, int]:
        """Live workspaces by state."""
        return self._records.census()

    def failures(self, limit: int = 20) -> list[Failure]:
        """The latest workspaces marked Corrupted, the newest first (for an administrator)."""
        return self._records.failures(limit)

    def propagation(self, workspace_id: int) -> Propagation | None:
        """How far the copy of the workspace's image has got, while one runs."""
        return self._deployers.propagation(workspace_id)

    # ---- operations -----------------------------------------------------------------

    def start(self, caller: Caller, workspace_id: int) -> Workspace:
        return self._operations.operate(caller, workspace_id, Op.START)

    def shutdown(
        self, caller: Caller, workspace_id: int, op: Op = Op.SHUTDOWN, save_target: str | None = None
    ) -> Workspace:
        """``save_target`` (with READY_FOR_TRANSPORT) replaces where the disk is saved, for good."""
        return self._operations.operate(caller, workspace_id, op, save_target)

    def destroy(self, caller: Caller, workspace_id: int) -> Workspace:
        return self._operations.operate(caller, workspace_id, Op.DESTROY)

    def renegotiate(
        self, caller: Caller, workspace_id: int, change: AllocationChange, *, at_next_start: bool = False
    ) -> Renegotiated:
        """Grant a new allocation if policy allows and the node has room: live where libvirt can,
        else refused, or from the next start with ``at_next_start``."""
        return self._renegotiation.renegotiate(caller, workspace_id, change, at_next_start=at_next_start)

    # ---- leases ---------------------------------------------------------------------

    def set_termination_time(self, caller: Caller, workspace_id: int, when: datetime | None) -> Workspace:
        """Move the end of the lease within policy; a past time ends it at the next sweep."""
        return self._lifetime.set_termination_time(caller, workspace_id, when)

    def next_termination(self) -> datetime | None:
        return self._lifetime.next_termination()

    def expire_due(self) -> list[int]:
        """Destroy every workspace whose lease has ended; returns their ids."""
        return self._lifetime.expire_due()

    # ---- advance reservations ---------------------------------------------------------

    def next_reservation_due(self) -> datetime | None:
        """When the next advance reservation must begin its bring-up (its start less the lead)."""
        return self._reservations.next_due()

    def availability(
        self, machine: MachineRequest, duration: timedelta, start: datetime | None = None, count: int = 3
    ) -> list[Window]:
        """The earliest ``count`` windows of ``duration``, from ``start`` (or now), that a node can hold
        ``machine`` for, alongside every admitted reservation and lease."""
        return self._reservations.availability(machine, duration, start, count)

    def start_due_reservations(self) -> list[int]:
        """Bring up every reservation that is due, to be Running at its start; returns their ids."""
        return self._reservations.start_due()

    # ---- the service's own upkeep ---------------------------------------------------

    def recover(self) -> list[str]:
        """At start-up: take every node up (finish what a crash cut off half-way, then reconcile);
        returns what was found."""
        self.begin_recovery()
        return self.recovered()

    def begin_recovery(self) -> None:
        """``recover`` in the background: until its node is taken up, whatever would change a
        workspace waits, and reads are answered from the store."""
        self._recovery.begin()

    def recovered(self) -> list[str]:
        """Wait until every node is taken up; what recovery found."""
        return self._recovery.wait()

    def reconcile(self) -> list[str]:
        """Compare every settled workspace with its domain; returns what was found wrong."""
        return self._reconciliation.reconcile()

    def on_domain_event(self, node: str, domain: str, event: str) -> None:
        """A lifecycle event from libvirt (the pool's callback)."""
        self._reconciliation.on_domain_event(node, domain, event)

    def close(self) -> None:
        """Stop deploying (a copy in flight stops at its next step) and handling events, once
        recovery is done."""
        self._recovery.wait()
        self._deployers.close()
        self._reconciliation.close()
