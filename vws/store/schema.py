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


@MIGRATIONS()
def m004_pool_domains_images_and_lease_order(db: Database) -> None:
    # What the pool defined on each node and the power state it last put it in: the spec a
    # test-driver node (whose domains live only in the process) is rebuilt from at restart,
    # and the record that a domain is not yet gone (its leases stay held until the row is).
    table(db, "pool_domains").create(
        {
            "node": str,
            "domain": str,
            "workspace_id": int,
            "xml": str,
            "state": str,  # shutoff | running | paused
            "directory": str,  # per-workspace files (overlay, blank disks, context drive)
            "bases": str,  # JSON list of cached base images the domain's disks read through
        },
        pk=("node", "domain"),
        not_null={"workspace_id", "xml", "state"},
    )
    table(db, "pool_domains").create_index(["workspace_id"])
    # Images a workspace holds from placement until its domain is gone: read-write ones
    # exclusively, read-only ones shared.
    table(db, "image_claims").create(
        {"workspace_id": int, "path": str, "writable": int},
        pk=("workspace_id", "path"),
        not_null={"writable"},
    )
    table(db, "image_claims").create_index(["path"])
    # sha256 of repository files, valid while (size, mtime_ns) are unchanged.
    table(db, "image_checksums").create(
        {"path": str, "size": int, "mtime_ns": int, "sha256": str},
        pk="path",
        not_null={"size", "mtime_ns", "sha256"},
    )
    # File order of pool entries (allocation takes the first free), the NIC order of a
    # workspace's leases, and how each was acquired.
    table(db, "leases").add_column("seq", int)
    table(db, "leases").add_column("nic_index", int)
    table(db, "leases").add_column("acquisition", str)
    table(db, "leases").create_index(["pool", "workspace_id", "seq"])
    # Where a node row came from: "file" (nodes file, synced at start), "admin", "embedded".
    table(db, "nodes").add_column("origin", str)


@MIGRATIONS()
def m005_background_deployment(db: Database) -> None:
    # 1 while the service owes the workspace background work: its bring-up to the requested
    # initial state, or an unpropagation. After a crash, recovery takes it up again.
    table(db, "workspaces").add_column("deploying", int, not_null_default=0)
    # Set when a failed deployment gave back its node share, addresses and disks while the
    # workspace itself stays (Corrupted, with the reason) until the client destroys it.
    table(db, "workspaces").add_column("released_at", str)


@MIGRATIONS()
def m006_node_image_transfer(db: Database) -> None:
    # How a node gets its images: "local" (files in the state dir it reads), "upload"
    # (libvirt storage volumes on the node); NULL: derived from its URI.
    table(db, "nodes").add_column("images", str)
    # Base images cached as volumes on upload nodes. libvirt cannot rename a volume, so an
    # upload cut off by a crash leaves a volume under its final name: only a row here says
    # it is complete. used_at orders eviction (least recently used first).
    table(db, "node_volumes").create(
        {"node": str, "name": str, "used_at": str},
        pk=("node", "name"),
        not_null={"used_at"},
    )


@MIGRATIONS()
def m007_requested_mac(db: Database) -> None:
    # The MAC a NIC asked for (GT4 nic/MAC), used instead of the entry's own while leased.
    table(db, "leases").add_column("requested_mac", str)
    table(db, "leases").create_index(["requested_mac"], unique=True)


@MIGRATIONS()
def m008_notification_outbox(db: Database) -> None:
    # Notify messages queued and not yet delivered or dropped, in queueing order (id), so
    # a restart sends what the consumers had not received; a row goes when its fate is known.
    table(db, "notification_outbox").create(
        {"id": int, "lane": str, "address": str, "envelope": str},
        pk="id",
        not_null={"lane", "address", "envelope"},
    )
    table(db, "notification_outbox").create_index(["lane"])


@MIGRATIONS()
def m009_workspaces_by_owner(db: Database) -> None:
    # A user's workspaces (status service, quota checks) without scanning everyone's history.
    table(db, "workspaces").create_index(["owner", "destroyed_at"])


@MIGRATIONS()
def m010_seen_signatures(db: Database) -> None:
    # The replay cache: the SHA-256 of each signature value the service accepted, kept until the
    # instant its message could no longer be accepted anyway (µs since the epoch: one is written
    # per signed request, and an integer costs less than a timestamp; without a rowid, one b-tree
    # fewer to write), so a restart forgets no replay.
    db.execute("create table seen_signatures (digest blob primary key, until integer not null) without rowid")
    table(db, "seen_signatures").create_index(["until"])


@MIGRATIONS()
def m012_fault_time(db: Database) -> None:
    # When the failure behind `fault` happened (the Timestamp of the WorkspaceFault a
    # Corrupted workspace shows); for faults recorded before, their Corrupted event's time.
    table(db, "workspaces").add_column("fault_at", str)
    db.execute(
        "update workspaces set fault_at = (select max(at) from workspace_events"
        " where workspace_id = workspaces.id and state = 'corrupted') where fault is not null"
    )


@MIGRATIONS()
def m015_work_owed_and_pool_placements(db: Database) -> None:
    # One name for one concept: the flag m005 added as `deploying` also covers an
    # unpropagation, so it is named for what it says, background work owed to the workspace.
    db.execute("alter table workspaces rename column deploying to work_owed")
    # The pool's own record of each workspace it placed and not yet forgotten (the workspace
    # is gone), taken and given back in the workspace layer's transactions: what each node
    # holds (`held`: 0 once a failed deployment gave its share back) without reading the
    # workspace layer's table.
    table(db, "pool_placements").create(
        {"workspace_id": int, "node": str, "memory_mb": int, "vcpus": int, "held": int},
        pk="workspace_id",
        not_null={"node", "memory_mb", "vcpus", "held"},
    )
    table(db, "pool_placements").create_index(["node", "held"])
    db.execute(
        "insert into pool_placements select id, node, memory_mb, vcpus, released_at is null from workspaces"
        " where destroyed_at is null and node is not null"
    )


@MIGRATIONS()
def m021_ec2(db: Database) -> None:
    # The EC2 door's own records (vws/ec2). Access keys: each bound to one grid identity; the
    # secret AES-GCM-encrypted under a key kept outside the database (SigV4 needs the secret
    # itself to verify, so it cannot be hashed); revoked keys are kept, marked, for the record.
    table(db, "ec2_access_keys").create(
        {"access_key_id": str, "identity": str, "sealed_secret": bytes, "created_at": str, "revoked_at": str},
        pk="access_key_id",
        not_null={"identity", "sealed_secret", "created_at"},
    )
    # What RunInstances said about the workspaces it made (a WSRF-made one has no row).
    table(db, "ec2_instances").create(
        {
            "workspace_id": int,
            "reservation_id": str,
            "image_id": str,
            "instance_type": str,
            "key_name": str,
            "client_token": str,
            "launch_index": int,
        },
        pk="workspace_id",
        not_null={"reservation_id", "launch_index"},
    )
    table(db, "ec2_instances").create_index(["reservation_id"])
    # ClientToken idempotency: a token a caller used, and the reservation it made.
    table(db, "ec2_client_tokens").create(
        {"owner": str, "token": str, "reservation_id": str, "created_at": str},
        pk=("owner", "token"),
        not_null={"reservation_id", "created_at"},
    )
    table(db, "ec2_key_pairs").create(
        {"owner": str, "name": str, "key_pair_id": str, "fingerprint": str, "public_key": str, "created_at": str},
        pk=("owner", "name"),
        not_null={"key_pair_id", "fingerprint", "public_key", "created_at"},
    )
    table(db, "ec2_tags").create({"workspace_id": int, "key": str, "value": str}, pk=("workspace_id", "key"))
