"""Creating workspaces: policy, admission checks, and the reservation transaction.

Creation answers as soon as the reservation is committed: node memory and CPUs and
network leases are taken in the same transaction that records the workspaces, which
are Unpropagated until a deployer brings them to their initial state. Ensemble
members are reserved held, and brought up together when the ensemble is done.
"""

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlite_utils import Database

from vws.clock import Clock, timestamp
from vws.config import PolicyConfig
from vws.errors import InvalidMetadata, RequestDenied
from vws.pool.calendar import Window
from vws.pool.manager import PoolManager
from vws.store import rows
from vws.store.database import Store
from vws.workspace.allocation_policy import check_allocation
from vws.workspace.caller import Caller
from vws.workspace.deployment import Deployment
from vws.workspace.records import Records, Workspace, log_change, record_event
from vws.workspace.request import DeploymentRequest
from vws.workspace.states import INITIAL_OPS, State

# (db, caller, request, duration), inside the reservation transaction; raising refuses.
AdmissionCheck = Callable[[Database, Caller, DeploymentRequest, timedelta], None]
# Before any transaction; returns the request to create (raising refuses).
Resolver = Callable[[DeploymentRequest], DeploymentRequest]


class Creation:
    def __init__(
        self,
        store: Store,
        pool: PoolManager,
        clock: Clock,
        policy: PolicyConfig,
        records: Records,
        deployment: Deployment,
    ) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock
        self._policy = policy
        self._records = records
        self._deployment = deployment
        self._admission_checks: list[AdmissionCheck] = []
        self._resolvers: list[Resolver] = []

    def add_admission_check(self, check: AdmissionCheck) -> None:
        """``check`` runs before every reservation, inside its transaction: raising reserves nothing."""
        self._admission_checks.append(check)

    def add_resolver(self, resolver: Resolver) -> None:
        """``resolver`` may refuse or rewrite every request before anything is reserved (appliances)."""
        self._resolvers.append(resolver)

    def create(self, caller: Caller, request: DeploymentRequest) -> list[Workspace]:
        """Place and reserve ``node_number`` workspaces, or none; they are Unpropagated now
        and reach the requested initial state in the background."""
        request = self._resolved(request)
        duration = check_policy(self._policy, caller, request)
        return self._deployment.deploy(self._reserve(caller, request, duration))

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
        request = self._resolved(request)
        duration = check_policy(self._policy, caller, request)
        return self._reserve(caller, request, duration, ensemble_key, prepare)

    def release_held(self, ids: list[int]) -> list[Workspace]:
        """Bring held workspaces up together, in the background: every one reaches its initial
        state, or all end Corrupted with what they held given back."""
        with self._store.transaction() as db:
            db.execute(
                f"update workspaces set work_owed = 1 where state = ? and id in ({', '.join('?' * len(ids))})",
                [State.UNPROPAGATED.value, *ids],
            )
        return self._deployment.deploy(self._snapshots(ids))

    def _resolved(self, request: DeploymentRequest) -> DeploymentRequest:
        for resolve in self._resolvers:
            request = resolve(request)
        return request

    def _snapshots(self, ids: list[int]) -> list[Workspace]:
        return [self._records.snapshot(workspace_id) for workspace_id in ids]

    def _reserve(
        self,
        caller: Caller,
        request: DeploymentRequest,
        duration: timedelta,
        ensemble_key: str | None = None,
        prepare: Callable[[Database], None] | None = None,
    ) -> list[Workspace]:
        """The new workspaces as committed (and told to the listeners)."""
        now = self._clock.now()
        window = reserved_window(request, duration, now)
        group = str(uuid.uuid4()) if request.node_number > 1 else None
        row = {
            "owner": caller.identity,
            "name": request.name,
            "state": State.UNPROPAGATED.value,
            "memory_mb": request.machine.memory_mb,
            "vcpus": request.machine.vcpus,
            "created_at": timestamp(now),
            "termination_time": timestamp(window.end),
            "request": request.to_json(),
            "group_key": group,
            "ensemble_key": ensemble_key,
            # Ensemble members wait, held, until the ensemble is done; reservations until their start.
            "work_owed": int(
                ensemble_key is None and request.start_at is None and bool(INITIAL_OPS[request.initial_state])
            ),
        }
        self._pool.describe_nodes()  # reads nodes not yet described over libvirt: never inside the transaction
        with self._store.transaction() as db:
            for check in self._admission_checks:
                check(db, caller, request, duration)
            self._pool.check_room(db, request.machine, request.node_number, window)  # before a row is written
            if prepare is not None:
                prepare(db)
            ids = [rows.insert(db, "workspaces", row) for _ in range(request.node_number)]
            if group and request.save_target:  # as in GT4, a base name: each member saves to it plus -<id>
                for workspace_id in ids:
                    own = replace(request, save_target=f"{request.save_target}-{workspace_id}")
                    rows.update(db, "workspaces", workspace_id, {"request": own.to_json()})
            static = self._policy.allow_static_addresses
            placements = self._pool.place(db, ids, request.machine, allow_static=static, window=window)
            when = "" if request.start_at is None else f", reserved from {timestamp(window.start)}"
            for placement in placements:
                rows.update(
                    db, "workspaces", placement.workspace_id, {"node": placement.node, "domain": placement.domain}
                )
                record_event(db, placement.workspace_id, now, State.UNPROPAGATED, f"placed on {placement.node}{when}")
        for placement in placements:
            log_change(placement.workspace_id, "new", State.UNPROPAGATED, f"create: placed on {placement.node}")
        return self._records.notify(ids)


def reserved_window(request: DeploymentRequest, duration: timedelta, now: datetime) -> Window:
    """When the workspace holds its node's share: from its reserved start (or now) for its lease."""
    if request.start_at is None:
        return Window(now, now + duration)
    if request.start_at <= now:
        raise InvalidMetadata(f"the reservation's start {timestamp(request.start_at)} has passed")
    if request.initial_state == "Unpropagated":
        raise InvalidMetadata("a reservation is brought up at its start: InitialState Unpropagated cannot have one")
    return Window(request.start_at, request.start_at + duration)


def check_policy(policy: PolicyConfig, caller: Caller, request: DeploymentRequest) -> timedelta:
    """Refuse what the service's policy does not allow; returns the lease's duration."""
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
    check_allocation(policy, request.machine)
    duration = request.duration if request.duration is not None else timedelta(seconds=policy.default_running_seconds)
    maximum = timedelta(seconds=policy.maximum_running_seconds)
    if duration <= timedelta(0):
        raise InvalidMetadata("the requested duration must be positive")
    if duration > maximum:
        raise RequestDenied(f"running time {duration} exceeds the maximum {maximum}")
    return duration
