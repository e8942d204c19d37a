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
def m016_node_holdings_and_live_workspaces(db: Database) -> None:
    # What each node holds (memory and CPUs of its held placements), kept by triggers in the very
    # statement that changes pool_placements, so it cannot drift from them: placing a workspace
    # reads one row per node instead of summing every live placement (linear in live workspaces).
    table(db, "node_holdings").create(
        {"node": str, "memory_mb": int, "vcpus": int}, pk="node", not_null={"memory_mb", "vcpus"}
    )
    hold = (
        "insert into node_holdings (node, memory_mb, vcpus) values (new.node, new.memory_mb, new.vcpus)"
        " on conflict (node) do update set memory_mb = memory_mb + excluded.memory_mb, vcpus = vcpus + excluded.vcpus;"
    )
    give_back = (
        "update node_holdings set memory_mb = memory_mb - old.memory_mb, vcpus = vcpus - old.vcpus"
        " where node = old.node;"
    )
    for name, event, condition, action in (
        ("hold", "insert", "new.held", hold),
        ("give_back", "delete", "old.held", give_back),
        ("held_off", "update", "old.held", give_back),  # an update gives back the old share...
        ("held_on", "update", "new.held", hold),  # ...and holds the new one
    ):
        db.execute(
            f"create trigger pool_placements_{name} after {event} on pool_placements when {condition}"
            f" begin {action} end"
        )
    db.execute(
        "insert into node_holdings select node, sum(memory_mb), sum(vcpus) from pool_placements"
        " where held group by node"
    )
    # The live workspaces in key order (the status service, recovery, reconciliation, the census)
    # without walking the rows of every workspace ever destroyed.
    db.execute("create index workspaces_live on workspaces (id) where destroyed_at is null")


@MIGRATIONS()
def m017_operation_in_flight_and_failures(db: Database) -> None:
    # The operation driving a workspace's domain now (start, shutdown, ...): set before the
    # hypervisor is called, cleared by the commit of its outcome. A restart that finds one set
    # knows the operation was cut off, and takes libvirt's word on whether it happened.
    table(db, "workspaces").add_column("operation", str)
    # The status page's recent failures: the latest Corrupted events without a scan of all events.
    table(db, "workspace_events").create_index(["state"])


@MIGRATIONS()
def m018_contexts(db: Database) -> None:
    # The context broker's own tables (vws/context). A context lives until destroyed or past its
    # termination time; `secret` authenticates its members' agents, so it dies with the row.
    table(db, "contexts").create(
        {
            "key": str,
            "owner": str,
            "secret": str,
            "created_at": str,
            "termination_time": str,
            "expect_injections": int,  # 0 once noMoreInjections (or never expected)
            "locked": int,  # no more members will join
        },
        pk="key",
        not_null={"owner", "secret", "created_at", "termination_time", "expect_injections", "locked"},
    )
    table(db, "contexts").create_index(["termination_time"])
    # One row per expected member: a workspace that joined with its provides/requires (`spec`,
    # JSON), the addresses it was leased, what its agent reported, and how it ended.
    table(db, "context_members").create(
        {
            "workspace_id": int,
            "context_key": str,
            "addresses": str,  # JSON list of the leased IPs the agent is recognised by
            "hostname": str,  # its first NIC's leased hostname (a host certificate's name)
            "lease_ends": str,  # its workspace's termination time (a host certificate's end)
            "spec": str,
            "identities": str,  # JSON, once reported
            "exited": str,  # null, "ok" or "error"
            "error_code": int,
            "error_message": str,
        },
        pk="workspace_id",
        foreign_keys=[("context_key", "contexts", "key")],
        not_null={"context_key", "addresses", "spec"},
    )
    table(db, "context_members").create_index(["context_key"])
    # Host certificates issued to members (vws/security/hostcerts.py): kept past their context,
    # so that destroying the workspace revokes its certificate whenever that happens.
    table(db, "host_certificates").create(
        {"workspace_id": int, "serial": str, "hostname": str, "pem": str, "revoked_at": str},
        pk="workspace_id",
        not_null={"serial", "hostname", "pem"},
    )
    table(db, "context_data").create(
        {"context_key": str, "name": str, "value": str},
        pk=("context_key", "name"),
        foreign_keys=[("context_key", "contexts", "key")],
        not_null={"value"},
    )


@MIGRATIONS()
def m020_resizes_and_capacity_calendar(db: Database) -> None:
    # A renegotiation of a placed workspace (issue #14), kept by the pool from the moment its
    # node holds the larger of the old and new allocation until libvirt has the new one:
    # `applying` while the libvirt calls run (a crash there is finished at start-up), or
    # `deferred` when it takes effect at the domain's next start, which settles it.
    table(db, "pool_resizes").create(
        {"workspace_id": int, "node": str, "domain": str, "old": str, "new": str, "live": int, "phase": str},
        pk="workspace_id",
        not_null={"node", "domain", "old", "new", "live", "phase"},
    )
    # The capacity calendar (issue #14): each placement holds its node's share over a window,
    # from starts_at (null: from its creation) to ends_at (its lease's end; null: open), so an
    # advance reservation holds nothing before its start and best effort never overlaps it.
    table(db, "pool_placements").add_column("starts_at", str)
    table(db, "pool_placements").add_column("ends_at", str)
    db.execute(
        "update pool_placements set ends_at = (select termination_time from workspaces w where w.id = workspace_id)"
    )
    table(db, "pool_placements").create_index(["held", "ends_at"])
    # The reservations yet to start, without reading every placement: best effort's fast path.
    db.execute("create index pool_placements_starts on pool_placements (starts_at) where starts_at is not null")
    # Its index by time: an R*Tree of each placement's window in Unix seconds (no start: 0, no
    # end: far ahead), kept by triggers, so the placements overlapping a window are found without
    # reading them all. Its coordinates are 32-bit floats rounded outward: a superset, which
    # the calendar's query narrows on the exact timestamps.
    db.execute("create virtual table pool_calendar using rtree(workspace_id, starts, ends)")
    starts, ends = "coalesce(unixepoch({0}.starts_at), 0)", "coalesce(unixepoch({0}.ends_at), 1e11)"
    window = f"{starts}, max({starts}, {ends})"  # a lease cut short before its start: an empty window
    db.execute(
        "create trigger pool_calendar_insert after insert on pool_placements begin"
        f" insert into pool_calendar values (new.workspace_id, {window.format('new')}); end"
    )
    db.execute(
        "create trigger pool_calendar_update after update of starts_at, ends_at on pool_placements begin"
        " delete from pool_calendar where workspace_id = old.workspace_id;"
        f" insert into pool_calendar values (new.workspace_id, {window.format('new')}); end"
    )
    db.execute(
        "create trigger pool_calendar_delete after delete on pool_placements begin"
        " delete from pool_calendar where workspace_id = old.workspace_id; end"
    )
    db.execute(
        f"insert into pool_calendar select workspace_id, {window.format('pool_placements')} from pool_placements"
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


@MIGRATIONS()
def m023_network_pools_synced(db: Database) -> None:
    # What the network pool files and [pool] mac_prefix were at the last sync (a digest): a
    # start that finds them unchanged skips the sync, which reads every address.
    table(db, "network_pools_synced").create({"digest": str}, not_null={"digest"})


@MIGRATIONS()
def m024_workspace_revisions(db: Database) -> None:
    # A workspace's revision goes up, in the very statement, whenever its row or one of its
    # leases changes (all a snapshot is built from): a reader that finds the revision it has a
    # snapshot of needs to build nothing. (Triggers do not fire themselves: the bump is not bumped.)
    table(db, "workspaces").add_column("revision", int, not_null_default=0)
    db.execute(
        "create trigger workspaces_revision after update on workspaces when new.revision = old.revision"
        " begin update workspaces set revision = old.revision + 1 where id = old.id; end"
    )
    for event, holders in (
        ("insert", "new.workspace_id"),
        ("update", "old.workspace_id, new.workspace_id"),
        ("delete", "old.workspace_id"),
    ):
        db.execute(
            f"create trigger leases_revision_{event} after {event} on leases"
            f" begin update workspaces set revision = revision + 1 where id in ({holders}); end"
        )
