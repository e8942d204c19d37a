"""The whole SQLite schema, as sqlite-utils Migrations: the one place tables are born.

Add a new ``@MIGRATIONS()`` function for every change; never edit one that has shipped,
because databases in the field remember which ones they have applied.
"""

from sqlite_utils import Database
from sqlite_utils.db import Table
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("vws")


def table(db: Database, name: str) -> Table:
    return db.table(name)  # type: ignore[return-value]


@MIGRATIONS()
def m001_workspaces(db: Database) -> None:
    # One row per workspace, kept after destruction (destroyed_at set) for accounting.
    # Memory and CPUs reserved on `node` are derived from the live rows, never stored twice.
    table(db, "workspaces").create(
        {
            "id": int,
            "owner": str,
            "name": str,
            "state": str,
            "fault": str,
            "node": str,
            "domain": str,
            "memory_mb": int,
            "vcpus": int,
            "created_at": str,
            "started_at": str,
            "termination_time": str,
            "destroyed_at": str,
            "request": str,
            "group_key": str,
            "ensemble_key": str,
        },
        pk="id",
        not_null={"owner", "state", "memory_mb", "vcpus", "created_at", "termination_time", "request"},
    )
    table(db, "workspaces").create_index(["node", "destroyed_at"])
    table(db, "workspaces").create_index(["termination_time"])
    table(db, "workspace_events").create(
        {"id": int, "workspace_id": int, "at": str, "state": str, "detail": str},
        pk="id",
        foreign_keys=[("workspace_id", "workspaces", "id")],
    )
    table(db, "workspace_events").create_index(["workspace_id"])


@MIGRATIONS()
def m002_nodes_and_leases(db: Database) -> None:
    table(db, "nodes").create(
        {
            "name": str,
            "uri": str,
            "memory_mb": int,
            "cpus": int,
            "networks": str,  # JSON list of pool names, or ["*"]
            "active": int,
            "available": int,
        },
        pk="name",
        not_null={"uri", "memory_mb", "cpus", "networks"},
        defaults={"active": 1, "available": 1, "networks": '["*"]'},
    )
    # One row per address a network pool can hand out; workspace_id NULL means free.
    table(db, "leases").create(
        {
            "pool": str,
            "ip": str,
            "hostname": str,
            "gateway": str,
            "broadcast": str,
            "netmask": str,
            "dns": str,
            "mac": str,
            "workspace_id": int,
            "nic": str,
        },
        pk=("pool", "ip"),
        not_null={"hostname", "mac"},
    )
    table(db, "leases").create_index(["mac"], unique=True)
    table(db, "leases").create_index(["workspace_id"])


@MIGRATIONS()
def m003_subscriptions_ensembles_accounting(db: Database) -> None:
    # WS-BaseNotification subscriptions; `producer` is the producing resource's key.
    table(db, "subscriptions").create(
        {
            "key": str,
            "owner": str,
            "producer": str,
            "producer_reference": str,  # wsa:EndpointReference XML
            "topic": str,  # Clark QName
            "consumer": str,  # wsa:EndpointReference XML
            "created_at": str,
            "termination_time": str,  # NULL: until the producer is destroyed
            "paused": int,
        },
        pk="key",
        not_null={"owner", "producer", "producer_reference", "topic", "consumer", "created_at"},
        defaults={"paused": 0},
    )
    table(db, "subscriptions").create_index(["producer"])
    # Co-scheduled ensembles; members carry workspaces.ensemble_key.
    table(db, "ensembles").create(
        {"key": str, "owner": str, "created_at": str, "done_at": str, "destroyed_at": str},
        pk="key",
        not_null={"owner", "created_at"},
    )
    # One CREATED and one REMOVED record per workspace; charges are in minutes.
    table(db, "accounting_events").create(
        {
            "id": int,
            "event": str,
            "workspace_id": int,
            "owner": str,
            "memory_mb": int,
            "vcpus": int,
            "node": str,
            "start": str,
            "end": str,
            "charge_minutes": int,
            "at": str,
        },
        pk="id",
        not_null={"event", "workspace_id", "owner", "memory_mb", "vcpus", "start", "end", "charge_minutes", "at"},
    )
    table(db, "accounting_events").create_index(["workspace_id", "event"], unique=True)
    table(db, "accounting_events").create_index(["owner", "at"])
