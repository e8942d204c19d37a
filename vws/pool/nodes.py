"""The node pool: hypervisor nodes vws may place workspaces on, kept in the ``nodes`` table.

Library functions for the service and for ``vws-admin nodes add|remove|update|list``:
each takes a sqlite-utils Database (inside the caller's transaction) and returns data
or raises a typed error. Memory and CPUs *in use* are never counted here: ``usage`` reads
them from ``node_holdings``, which SQLite triggers keep equal to the sums of the pool's own
``pool_placements`` rows in the statement that changes them, so they cannot drift.

Nodes file (``PoolConfig.nodes_file``, sample in ``etc/nodes.conf``): INI, one section per
node, keys ``uri``, ``memory`` (MB vws may give out), ``cpus``, ``networks`` (network pool
names, comma-separated, or ``*``), ``active`` (yes/no), ``images`` (``local`` or
``upload``, see ``Node.image_mode``). At start its nodes are written
into the table (the file wins for the keys it names); a node the file used to list and
no longer does is removed when idle, else made inactive. Nodes added with the admin
CLI are left alone. Without a nodes file the embedded default applies: one test-driver
node ``node1`` (8 CPUs, 16 GiB), created when the table is empty.
"""

import configparser
import functools
import json
import logging
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlite_utils import Database

from vws.config import ConfigError, parse_boolean, read_ini
from vws.errors import InvalidMetadata, RequestDenied, UnknownResource
from vws.pool.designer import shapes
from vws.pool.placement import NodeLoad
from vws.store.rows import one, select

log = logging.getLogger(__name__)

ANY_NETWORK = "*"
EMBEDDED = "node1"
EMBEDDED_MEMORY_MB = 16384
EMBEDDED_CPUS = 8

# How a node gets its images (``Node.image_mode``).
LOCAL = "local"  # files in this service's state dir, which the node reads as they are
UPLOAD = "upload"  # libvirt storage volumes on the node, shipped over its connection
IMAGE_MODES = (LOCAL, UPLOAD)


class UnknownNode(UnknownResource):
    """No node by that name in the pool."""


class NodeExists(RequestDenied):
    """A node by that name is already in the pool."""


class NodeBusy(RequestDenied):
    """The change would strand workspaces that live on the node."""


class NodesFileError(ConfigError):
    """The nodes file cannot be read as the documented INI format."""


@dataclass(frozen=True)
class Node:
    name: str
    uri: str
    memory_mb: int
    cpus: int
    networks: tuple[str, ...] = (ANY_NETWORK,)
    active: bool = True  # admin's switch: inactive nodes get no new workspaces (drained)
    available: bool = True  # health: the last connection attempt worked
    origin: str = "admin"  # admin | file | embedded
    images: str | None = None  # local | upload; None: from the URI

    def reaches(self, pool: str) -> bool:
        return ANY_NETWORK in self.networks or pool in self.networks

    @property
    def image_mode(self) -> str:
        """``images`` when set, else local for nodes that share this host's files."""
        return self.images or (LOCAL if shares_files(self.uri) else UPLOAD)


def shares_files(uri: str) -> bool:
    """Whether the node runs on this host: test nodes, qemu:///system, a localhost URI."""
    host = urllib.parse.urlsplit(uri).hostname
    return host in (None, "", "localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Usage:
    memory_mb: int = 0
    cpus: int = 0


def list_nodes(db: Database) -> list[Node]:
    return [_from_row(row) for row in select(db, "select * from nodes order by name")]


def get_node(db: Database, name: str) -> Node:
    row = one(db, "select * from nodes where name = ?", [name])
    if row is None:
        raise UnknownNode(f"no node named {name!r} in the pool")
    return _from_row(row)


def add_node(
    db: Database,
    name: str,
    uri: str,
    memory_mb: int,
    cpus: int,
    networks: Sequence[str] = (ANY_NETWORK,),
    *,
    active: bool = True,
    origin: str = "admin",
    images: str | None = None,
) -> Node:
    node = _validated(Node(name, uri, memory_mb, cpus, tuple(networks), active, True, origin, images))
    if one(db, "select name from nodes where name = ?", [name]):
        raise NodeExists(f"node {name!r} is already in the pool")
    db["nodes"].insert(_to_row(node))
    return node


def update_node(
    db: Database,
    name: str,
    *,
    uri: str | None = None,
    memory_mb: int | None = None,
    cpus: int | None = None,
    networks: Sequence[str] | None = None,
    active: bool | None = None,
    available: bool | None = None,
    images: str | None = None,
) -> Node:
    """Change the given fields; refuses to shrink a node below what its workspaces hold."""
    node = get_node(db, name)
    changes = {
        key: value
        for key, value in {
            "uri": uri,
            "memory_mb": memory_mb,
            "cpus": cpus,
            "networks": None if networks is None else tuple(networks),
            "active": active,
            "available": available,
            "images": images,
        }.items()
        if value is not None
    }
    updated = _validated(replace(node, **changes))
    used = usage(db).get(name, Usage())
    if updated.memory_mb < used.memory_mb or updated.cpus < used.cpus:
        raise NodeBusy(
            f"node {name} holds {used.memory_mb} MB and {used.cpus} CPUs of live workspaces; "
            f"it cannot shrink to {updated.memory_mb} MB and {updated.cpus} CPUs"
        )
    if updated.image_mode != node.image_mode and used.cpus:
        raise NodeBusy(
            f"node {name} has live workspaces whose disks are {node.image_mode} ones; "
            f"it cannot switch to {updated.image_mode} under them"
        )
    db["nodes"].update(name, _to_row(updated))
    return updated


def remove_node(db: Database, name: str) -> Node:
    """Take a node out of the pool; refused while live workspaces are placed on it."""
    node = get_node(db, name)
    live = db.execute("select count(*) from pool_placements where node = ?", [name]).fetchone()[0]
    if live:
        raise NodeBusy(f"node {name} still has {live} live workspace(s); make it inactive to drain it first")
    db["nodes"].delete(name)
    return node


# Memory and CPUs held per node: by the live workspaces placed there, except those whose
# failed deployment gave their share back (schema m016: the held pool_placements, summed by
# triggers). The one definition placement and admin share: one row per node, however many live.
HELD_PER_NODE = "select node, memory_mb, vcpus from node_holdings where memory_mb or vcpus"


def usage(db: Database) -> dict[str, Usage]:
    """Memory and CPUs held per node."""
    return {node: Usage(memory or 0, cpus or 0) for node, memory, cpus in db.execute(HELD_PER_NODE)}


# Every node with the memory and CPUs its live workspaces hold: one query per placement.
_LOADS = f"""
    select n.name, n.memory_mb, n.cpus, coalesce(u.memory_mb, 0), coalesce(u.vcpus, 0), n.networks,
           n.active and n.available, n.uri
    from nodes n left join ({HELD_PER_NODE}) u on u.node = n.name
    order by n.name
"""


def loads(db: Database, bridged: frozenset[str] = frozenset()) -> list[NodeLoad]:
    """Each node's size, what it holds, its networks, whether it takes new workspaces, and
    the pools whose bandwidth it can enforce (``bridged``: the pools ``[pool] bridges`` names)."""
    return [
        NodeLoad(name, memory, cpus, used_memory, used_cpus, _networks(networks), bool(usable), shapes(uri, bridged))
        for name, memory, cpus, used_memory, used_cpus, networks, usable, uri in db.execute(_LOADS)
    ]


_SIZES = "select name, memory_mb, cpus, networks, active and available, uri from nodes order by name"


def sizes(db: Database, bridged: frozenset[str] = frozenset()) -> list[NodeLoad]:
    """``loads`` without what is held: for the capacity calendar, which works that out per window."""
    return [
        NodeLoad(name, memory, cpus, 0, 0, _networks(networks), bool(usable), shapes(uri, bridged))
        for name, memory, cpus, networks, usable, uri in db.execute(_SIZES)
    ]


@functools.lru_cache(maxsize=256)
def _networks(text: str) -> frozenset[str]:
    return frozenset(json.loads(text))


# ---- the nodes file ---------------------------------------------------------------------


def read_nodes_file(path: Path) -> list[Node]:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        lines = read_ini(path, parser)
    except ConfigError as exc:
        raise NodesFileError(str(exc)) from None
    return [_node_from_section(path, lines, name, parser[name]) for name in parser.sections()]


def sync_nodes_file(db: Database, nodes: Iterable[Node]) -> None:
    """Write the file's nodes into the table; retire nodes the file no longer lists."""
    listed = {node.name: node for node in nodes}
    for node in listed.values():
        row = one(db, "select * from nodes where name = ?", [node.name])
        if row is not None:
            current = _from_row(row)
            db["nodes"].update(node.name, _to_row(replace(node, available=current.available, origin="file")))
        else:
            db["nodes"].insert(_to_row(replace(node, origin="file")))
    for node in list_nodes(db):
        if node.origin == "file" and node.name not in listed:
            try:
                remove_node(db, node.name)
            except NodeBusy:
                log.warning("node %s left the nodes file but has live workspaces; made inactive", node.name)
                db["nodes"].update(node.name, {"active": 0})


_NODE_KEYS = ("uri", "memory", "cpus", "networks", "active", "images")


def _node_from_section(
    path: Path, lines: dict[tuple[str, str], int], name: str, section: configparser.SectionProxy
) -> Node:
    def where(key: str = "") -> str:
        return f"{path}:{lines.get((name, key)) or lines.get((name, ''))}: [{name}]"

    unknown = sorted(set(section) - set(_NODE_KEYS))
    if unknown:
        raise NodesFileError(f"{where(unknown[0])} unknown key {unknown[0]} (known: {', '.join(_NODE_KEYS)})")
    for key in ("uri", "memory"):
        if key not in section:
            raise NodesFileError(f"{where()} has no {key}")
    values = {}
    for key, convert in (("memory", int), ("cpus", int), ("active", parse_boolean)):
        if key in section:
            try:
                values[key] = convert(section[key])
            except ValueError:
                raise NodesFileError(f"{where(key)} {key} = {section[key]!r} is not {_NODE_VALUES[key]}") from None
    node = Node(
        name=name,
        uri=section["uri"],
        memory_mb=values["memory"],
        cpus=values.get("cpus", 1),
        networks=parse_networks(section.get("networks", ANY_NETWORK)),
        active=values.get("active", True),
        origin="file",
        images=section.get("images"),
    )
    try:
        return _validated(node, where())
    except InvalidMetadata as exc:
        raise NodesFileError(exc.description) from None


_NODE_VALUES = {"memory": "a number of MB", "cpus": "a number", "active": "yes or no"}


def parse_networks(text: str) -> tuple[str, ...]:
    """``*`` or a comma-separated list of network pool names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return names or (ANY_NETWORK,)


def _validated(node: Node, where: str | None = None) -> Node:
    where = where or f"node {node.name!r}"
    if not node.name or any(char.isspace() or char in "/\\" for char in node.name):
        raise InvalidMetadata(f"{where}: a node name must be non-empty, without spaces or slashes")
    if "://" not in node.uri and not node.uri.startswith("test:"):
        raise InvalidMetadata(f"{where}: {node.uri!r} is not a libvirt URI")
    if node.memory_mb < 0 or node.cpus < 1:
        raise InvalidMetadata(f"{where}: memory must be >= 0 MB and cpus >= 1")
    if node.images is not None and node.images not in IMAGE_MODES:
        raise InvalidMetadata(f"{where}: images must be {' or '.join(IMAGE_MODES)}, not {node.images!r}")
    return node


def _from_row(row: dict) -> Node:
    return Node(
        name=row["name"],
        uri=row["uri"],
        memory_mb=row["memory_mb"],
        cpus=row["cpus"],
        networks=tuple(json.loads(row["networks"])),
        active=bool(row["active"]),
        available=bool(row["available"]),
        origin=row["origin"] or "admin",
        images=row["images"],
    )


def _to_row(node: Node) -> dict:
    return {
        "name": node.name,
        "uri": node.uri,
        "memory_mb": node.memory_mb,
        "cpus": node.cpus,
        "networks": json.dumps(list(node.networks)),
        "active": int(node.active),
        "available": int(node.available),
        "origin": node.origin,
        "images": node.images,
    }
