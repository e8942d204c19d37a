"""Workspace leases: moving the termination time within policy, and ending what is due."""

import logging
from datetime import datetime, timedelta

from vws.clock import Clock, parse_timestamp, timestamp
from vws.config import PolicyConfig
from vws.errors import InvalidTerminationTime, VwsError
from vws.pool.manager import PoolManager
from vws.store import rows
from vws.store.database import Store
from vws.workspace.caller import Caller
from vws.workspace.operations import Operations
from vws.workspace.records import Records, Workspace
from vws.workspace.states import Op, State

log = logging.getLogger(__name__)


class Lifetime:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        policy: PolicyConfig,
        records: Records,
        operations: Operations,
        pool: PoolManager,
    ) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock
        self._policy = policy
        self._records = records
        self._operations = operations

    def set_termination_time(self, caller: Caller, workspace_id: int, when: datetime | None) -> Workspace:
        """Move the end of the lease within policy; a past time ends it at the next sweep."""
        workspace = self._records.get(caller, workspace_id)
        if when is None:
            raise InvalidTerminationTime("a workspace lease cannot be made infinite")
        latest = workspace.created_at + timedelta(seconds=self._policy.maximum_running_seconds)
        if when > latest:
            raise InvalidTerminationTime(f"termination time after {timestamp(latest)} exceeds the maximum running time")
        with self._store.transaction() as db:
            rows.update(db, "workspaces", workspace_id, {"termination_time": timestamp(when)})
            self._pool.set_end(db, workspace_id, when)  # refused if a reservation needs the node by then
        return self._records.notify([workspace_id])[0]

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
        workspace = self._records.snapshot(workspace_id)
        log.info("workspace %s: its lease ended at %s; ending it", workspace_id, timestamp(workspace.termination_time))
        try:
            if workspace.state in (State.RUNNING, State.PAUSED) and not workspace.request.trash_at_shutdown:
                self._operations.apply(workspace_id, Op.SHUTDOWN)
        except VwsError as exc:
            log.warning("graceful shutdown of expired workspace %s failed: %s", workspace_id, exc)
        self._operations.quietly(workspace_id, Op.DESTROY)
