"""Advance reservations coming due: each is brought up early enough to be Running at its start.

A reservation is admitted and placed at create (its node's share held over its window in the
capacity calendar, its addresses leased), then waits Unpropagated with no work owed, its
start in ``schedule``. ``[policy] reservation_lead_seconds`` before its start it is released
like a held ensemble member: the deployers copy its image, define and start it. The start
lives in the stored request, so a restart loses no reservation and ``start_due`` finds any
whose moment passed while the service was down. One whose node was drained or lost since
its admission is re-placed on another that can hold it, or ends Corrupted saying why.
"""

from datetime import datetime, timedelta

from vws.clock import Clock, parse_timestamp, timestamp
from vws.errors import InvalidMetadata, SchedulingFailed
from vws.pool.calendar import Window
from vws.pool.manager import PoolManager
from vws.store import rows
from vws.store.database import Store
from vws.workspace.creation import Creation
from vws.workspace.records import Records, record_event
from vws.workspace.request import MachineRequest
from vws.workspace.states import State

__all__ = ["Reservations", "Window"]  # Window is the pool's: named here for the front ends

# Reservations still waiting: Unpropagated, nothing owed, not an ensemble member, a start.
_WAITING = """
    from workspaces where destroyed_at is null and state = ? and work_owed = 0 and ensemble_key is null
    and json_extract(request, '$.start_at') is not null
"""


class Reservations:
    def __init__(
        self, store: Store, pool: PoolManager, clock: Clock, lead: timedelta, records: Records, creation: Creation
    ) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock
        self._lead = lead
        self._records = records
        self._creation = creation

    def next_due(self) -> datetime | None:
        """When the next waiting reservation must begin its bring-up."""
        with self._store.reading() as db:
            (start,) = db.execute(
                f"select min(json_extract(request, '$.start_at')) {_WAITING}", [State.UNPROPAGATED.value]
            ).fetchone()
        return None if start is None else parse_timestamp(start) - self._lead

    def start_due(self) -> list[int]:
        """Release every reservation whose bring-up is due; returns their ids."""
        due = timestamp(self._clock.now() + self._lead)
        with self._store.reading() as db:
            ids = [
                row[0]
                for row in db.execute(
                    f"select id {_WAITING} and json_extract(request, '$.start_at') <= ? order by id",
                    [State.UNPROPAGATED.value, due],
                )
            ]
        kept = [workspace_id for workspace_id in ids if self._keep_node(workspace_id)]
        if kept:
            self._creation.release_held(kept)
        return ids

    def availability(
        self, machine: MachineRequest, duration: timedelta, start: datetime | None, count: int
    ) -> list[Window]:
        if machine.memory_mb < 1 or machine.vcpus < 1:
            raise InvalidMetadata("memory and CPU count must be positive")
        if duration <= timedelta(0):
            raise InvalidMetadata("the duration must be positive")
        begin = max(start or self._clock.now(), self._clock.now())
        return self._pool.availability(machine, Window(begin, begin + duration), count)

    def _keep_node(self, workspace_id: int) -> bool:
        """Its node, or another if that one is gone; False (and Corrupted) when none can hold it."""
        with self._records.locked(workspace_id):
            workspace = self._records.snapshot(workspace_id)
            window = Window(workspace.request.start_at or self._clock.now(), workspace.termination_time)
            self._pool.describe_nodes()  # a node added since may take it: over libvirt, before the transaction
            try:
                with self._store.transaction() as db:
                    node = self._pool.keep_reserved(db, workspace_id, workspace.request.machine, window)
                    if node != workspace.node:
                        rows.update(db, "workspaces", workspace_id, {"node": node})
                        detail = f"re-placed on {node}: its node {workspace.node} is no longer available"
                        record_event(db, workspace_id, self._clock.now(), workspace.state, detail)
            except SchedulingFailed as exc:
                fault = f"its node {workspace.node} is no longer available and no other can hold it: {exc.description}"
                self._records.commit(workspace_id, State.CORRUPTED, fault=fault, release=True)
                return False
        return True
