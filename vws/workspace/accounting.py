"""Accounting: one CREATED and one REMOVED record per workspace, and usage by owner.

Charges are minutes rounded up to the charge granularity (GT4's
``charge.granularity``, default 1): a CREATED record charges the reserved lease,
a REMOVED record the time the workspace actually held its reservation. Records are
written after each commit by a manager listener; ``catch_up`` writes any that a
crash between the two missed, from the workspaces table, which is the truth.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlite_utils import Database

from vws.clock import Clock, parse_timestamp, timestamp
from vws.store import rows
from vws.store.database import Store
from vws.workspace.records import Workspace
from vws.workspace.states import State

CREATED, REMOVED = "CREATED", "REMOVED"


def charge_minutes(length: timedelta, granularity: int) -> int:
    """Whole minutes rounded up to a multiple of ``granularity``."""
    units = math.ceil(max(length.total_seconds(), 0) / (60 * granularity))
    return units * granularity


@dataclass(frozen=True)
class Usage:
    """One owner's standing: what ended workspaces used and what live ones hold."""

    live: int
    used_minutes: int
    reserved_minutes: int


def usage(db: Database, owner: str, granularity: int) -> Usage:
    """Read inside any transaction, so a quota check sees exactly what it commits against."""
    live = used = reserved = 0
    for created, ends, destroyed in db.execute(
        "select created_at, termination_time, destroyed_at from workspaces where owner = ? and node is not null",
        [owner],
    ):
        if destroyed:
            used += charge_minutes(parse_timestamp(destroyed) - parse_timestamp(created), granularity)
        else:
            live += 1
            reserved += charge_minutes(parse_timestamp(ends) - parse_timestamp(created), granularity)
    return Usage(live, used, reserved)


@dataclass(frozen=True)
class UsageLine:
    owner: str
    created: int
    removed: int
    reserved_minutes: int  # charged by CREATED records in the period
    used_minutes: int  # charged by REMOVED records in the period


class Accounting:
    def __init__(self, store: Store, clock: Clock, granularity: int) -> None:
        self._store = store
        self._clock = clock
        self.granularity = granularity

    def record(self, workspace: Workspace) -> None:
        """Manager listener: write whichever records the workspace now warrants."""
        if not (workspace.state is State.UNPROPAGATED or workspace.state.gone):
            return  # records are born at placement and at removal; skip the steps between
        with self._store.transaction() as db:
            for row in rows.select(db, "select * from workspaces where id = ? and node is not null", [workspace.id]):
                self._write(db, row)

    def catch_up(self) -> int:
        """Write the records a crash lost; returns how many workspaces needed some."""
        with self._store.transaction() as db:
            missing = list(db.query(_MISSING))
            for row in missing:
                self._write(db, row)
        return len(missing)

    def usage(self, owner: str) -> Usage:
        with self._store.reading() as db:
            return usage(db, owner, self.granularity)

    def report(
        self, owner: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> list[UsageLine]:
        """Per owner, the records whose event time lies in [since, until)."""
        where, values = ["1"], []
        for clause, value in (("owner = ?", owner), ("at >= ?", since), ("at < ?", until)):
            if value is not None:
                where.append(clause)
                values.append(value if isinstance(value, str) else timestamp(value))
        with self._store.reading() as db:
            found = db.execute(_REPORT.format(where=" and ".join(where)), values).fetchall()
        return [UsageLine(*row) for row in found]

    def _write(self, db: Database, row: dict) -> None:
        created = parse_timestamp(row["created_at"])
        self._insert(db, row, CREATED, parse_timestamp(row["termination_time"]), created)
        if row["destroyed_at"]:
            removed = parse_timestamp(row["destroyed_at"])
            self._insert(db, row, REMOVED, removed, removed)

    def _insert(self, db: Database, row: dict, event: str, end: datetime, at: datetime) -> None:
        start = parse_timestamp(row["created_at"])
        record = {
            "event": event,
            "workspace_id": row["id"],
            "owner": row["owner"],
            "memory_mb": row["memory_mb"],
            "vcpus": row["vcpus"],
            "node": row["node"],
            "start": timestamp(start),
            "end": timestamp(end),
            "charge_minutes": charge_minutes(end - start, self.granularity),
            "at": timestamp(at),
        }
        rows.insert(db, "accounting_events", record, ignore=True)  # one of each per workspace


_MISSING = """
select w.* from workspaces w where w.node is not null and (
    not exists (select 1 from accounting_events a where a.workspace_id = w.id and a.event = 'CREATED')
    or (w.destroyed_at is not null and not exists (
        select 1 from accounting_events a where a.workspace_id = w.id and a.event = 'REMOVED')))
"""

_REPORT = """
select owner,
       sum(event = 'CREATED'), sum(event = 'REMOVED'),
       sum(case when event = 'CREATED' then charge_minutes else 0 end),
       sum(case when event = 'REMOVED' then charge_minutes else 0 end)
from accounting_events where {where} group by owner order by owner
"""
