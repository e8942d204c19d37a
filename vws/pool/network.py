"""Network pools: Nimbus pool files, synced into the ``leases`` table, leased per NIC.

Pool file (one per pool in ``PoolConfig.network_pools_dir``, named for the pool):

    # comments start with '#'
    192.168.128.1                                   <- first data line: DNS server, or none
    pub01 192.168.128.10 192.168.128.1 192.168.128.255 255.255.255.0 [MAC]
    hostname ip gateway [broadcast [netmask [MAC]]]

``none`` is allowed for gateway, broadcast and netmask (the guest is told nothing).
A missing netmask is derived from the address class (A: 255.0.0.0, B: 255.255.0.0,
C and above: 255.255.255.0), as Nimbus did; a missing broadcast is the address with all
host bits of that netmask set.

MACs come from the file, or are generated once from ``PoolConfig.mac_prefix`` and
STORED with the entry, so they stay the same across restarts (Nimbus issue #35). Sync
at start adds new entries, updates free ones, drops entries gone from the file only
while they are free, and never touches an assigned lease; it is skipped when the files
are as the last sync found them.

Leases are taken inside the caller's reservation transaction and released once, by
workspace id, only after the pool has seen the domain gone (Nimbus issue #101).

What a NIC may ask for (GT4 ``nic``: ``MAC``, ``ipConfig/acquisitionMethod``):

- ``AllocateAndConfigure``: the first free entry of the pool, in file order.
- ``Advisory``: the entry with the requested ``ipAddress`` if it is free, else as Allocate
  (a hint, so no policy gates it); the lease then says which of the two happened.
- ``AcceptAndConfigure``: exactly the requested address, only with
  ``[policy] allow_static_addresses``.
- ``MAC``: used instead of the entry's own (kept as ``requested_mac``, given back with the
  lease), only with ``allow_static_addresses``; it must be a unicast address that no other
  pool entry owns and no other live lease uses.
"""

import hashlib
import ipaddress
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_utils import Database

from vws.config import ConfigError
from vws.errors import InvalidMetadata, RequestDenied, SchedulingFailed
from vws.pool.machine import NetworkLease, NicRequest
from vws.store.rows import one, select

log = logging.getLogger(__name__)

ALLOCATE = "AllocateAndConfigure"
ACCEPT = "AcceptAndConfigure"
ADVISORY = "Advisory"
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
# Rows other than (pool, ip) that own a MAC (an entry's own) or use it (a live lease's requested one).
_MAC_HOLDERS = "select * from leases where (mac = ? or requested_mac = ?) and not (pool = ? and ip = ?)"

SAMPLE_POOL = "public"
SAMPLE_TEXT = """\
# vws network pool "public": the sample the embedded default starts with.
# First data line: the DNS server (or none). Then one address per line:
#   hostname ip gateway broadcast netmask [MAC]
# 'none' is allowed for gateway, broadcast and netmask. Without a MAC, one is made
# from [pool] mac_prefix and stored, so it is the same after every restart.
192.168.128.1
""" + "".join(f"pub{n:02d} 192.168.128.{n + 9} 192.168.128.1 192.168.128.255 255.255.255.0\n" for n in range(1, 11))


class NetworkPoolError(ConfigError):
    """A network pool file that does not follow the documented format, or pools that contradict each other."""


@dataclass(frozen=True)
class PoolEntry:
    hostname: str
    ip: str
    gateway: str | None
    broadcast: str | None
    netmask: str | None
    mac: str | None
    where: str = field(default="", compare=False)  # "file:line" it was read from


@dataclass(frozen=True)
class NetworkPool:
    name: str
    dns: str | None
    entries: tuple[PoolEntry, ...]


# ---- pool files --------------------------------------------------------------------------


def parse_pool(name: str, text: str, source: str | None = None) -> NetworkPool:
    """The pool ``name`` from the text of its file (``source``, named in errors as ``source:line``)."""
    source = source or f"network pool {name}"
    dns: str | None = None
    seen_dns = False
    entries: dict[str, PoolEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        if not seen_dns:
            dns, seen_dns = _none_or_address(line, where), True
            continue
        entry = _entry(line.split(), where)
        if entry.ip in entries:
            raise NetworkPoolError(f"{where}: {entry.ip} is listed twice (also at {entries[entry.ip].where})")
        entries[entry.ip] = entry
    return NetworkPool(name, dns, tuple(entries.values()))


def read_pools(directory: Path) -> list[NetworkPool]:
    """Every pool file in ``directory`` (hidden files and editor backups~ skipped)."""
    return parse_pools(read_files(directory))


def read_files(directory: Path) -> dict[Path, str]:
    """The text of every pool file in ``directory``, by path, in name order."""
    try:
        files = sorted(
            path
            for path in directory.iterdir()
            if path.is_file() and not path.name.startswith(".") and not path.name.endswith("~")
        )
        return {path: path.read_text() for path in files}
    except (OSError, UnicodeDecodeError) as exc:
        where = getattr(exc, "filename", None) or directory
        raise NetworkPoolError(f"{where}: cannot read network pools: {getattr(exc, 'strerror', None) or exc}") from None


def parse_pools(files: dict[Path, str]) -> list[NetworkPool]:
    return [parse_pool(path.name, text, str(path)) for path, text in files.items()]


def write_sample(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SAMPLE_POOL).write_text(SAMPLE_TEXT)


def _entry(fields: list[str], where: str) -> PoolEntry:
    if not 3 <= len(fields) <= 6:
        raise NetworkPoolError(f"{where}: expected 'hostname ip gateway [broadcast [netmask [MAC]]]'")
    hostname, ip = fields[0], _address(fields[1], where)
    gateway = _none_or_address(fields[2], where)
    broadcast = _none_or_address(fields[3], where) if len(fields) > 3 else None
    netmask = _none_or_address(fields[4], where) if len(fields) > 4 else _class_netmask(ip)
    if len(fields) <= 3 and netmask:
        broadcast = str(ipaddress.IPv4Network(f"{ip}/{netmask}", strict=False).broadcast_address)
    mac = _mac(fields[5], where) if len(fields) > 5 else None
    return PoolEntry(hostname, ip, gateway, broadcast, netmask, mac, where)


def _class_netmask(ip: str) -> str:
    first = int(ip.split(".", 1)[0])
    return "255.0.0.0" if first < 128 else "255.255.0.0" if first < 192 else "255.255.255.0"


def _address(text: str, where: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise NetworkPoolError(f"{where}: {text!r} is not an IPv4 address") from None


def _none_or_address(text: str, where: str) -> str | None:
    return None if text.lower() == "none" else _address(text, where)


def _mac(text: str, where: str) -> str:
    mac = text.lower()
    if not _MAC.match(mac):
        raise NetworkPoolError(f"{where}: {text!r} is not a MAC address")
    return mac


def check_mac_prefix(prefix: str) -> str:
    """Three octets of a locally administered unicast MAC (a bad prefix breaks ARP)."""
    octets = prefix.lower().split(":")
    setting = ("pool", "mac_prefix")
    if len(octets) != 3 or not all(re.fullmatch(r"[0-9a-f]{2}", octet) for octet in octets):
        raise NetworkPoolError(f"[pool] mac_prefix {prefix!r} must be three hex octets, like A2:AA:BB", setting)
    if int(octets[0], 16) & 0x01:
        raise NetworkPoolError(
            f"[pool] mac_prefix {prefix!r} is a multicast address; its first octet must be even", setting
        )
    return ":".join(octets)


# ---- the leases table ----------------------------------------------------------------------


def sync(db: Database, pools: Sequence[NetworkPool], mac_prefix: str, rng: random.Random | None = None) -> None:
    """Bring the ``leases`` table in line with the pool files, keeping assigned leases."""
    prefix = check_mac_prefix(mac_prefix)
    rng = rng or random.SystemRandom()
    names = {pool.name for pool in pools}
    for pool in pools:
        _sync_pool(db, pool, prefix, rng)
    for (name,) in db.execute("select distinct pool from leases").fetchall():
        if name not in names:
            _drop_free(db, name, keep=set())


def sync_files(db: Database, files: dict[Path, str], mac_prefix: str) -> None:
    """``sync`` the pools of ``files``, unless they and ``mac_prefix`` are as the last sync found them:
    a restart with the same files reads none of the addresses."""
    digest = hashlib.sha256(
        json.dumps([mac_prefix, *((path.name, text) for path, text in files.items())]).encode()
    ).hexdigest()
    if one(db, "select 1 from network_pools_synced where digest = ?", [digest]):
        return
    sync(db, parse_pools(files), mac_prefix)
    db.execute("delete from network_pools_synced")
    db.execute("insert into network_pools_synced (digest) values (?)", [digest])


def _sync_pool(db: Database, pool: NetworkPool, prefix: str, rng: random.Random) -> None:
    """Write the entries that are new or changed: a restart with the same files writes nothing."""
    stored = {row["ip"]: row for row in select(db, "select * from leases where pool = ?", [pool.name])}
    for seq, entry in enumerate(pool.entries):
        row = stored.get(entry.ip)
        if row is not None and row["workspace_id"] is not None:
            if row["seq"] != seq:  # assigned: only its order
                db.execute("update leases set seq = ? where pool = ? and ip = ?", [seq, pool.name, entry.ip])
            continue
        mac = entry.mac or (row["mac"] if row else None) or _new_mac(db, prefix, rng)
        wanted = {
            "pool": pool.name,
            "ip": entry.ip,
            "hostname": entry.hostname,
            "gateway": entry.gateway,
            "broadcast": entry.broadcast,
            "netmask": entry.netmask,
            "dns": pool.dns,
            "mac": mac,
            "seq": seq,
        }
        if row is not None and all(row[column] == value for column, value in wanted.items()):
            continue
        _check_mac_free(db, mac, pool.name, entry)
        db.execute(_UPSERT, list(wanted.values()))
    _drop_free(db, pool.name, keep={entry.ip for entry in pool.entries})


# A pool entry written over its row, if any, whose lease columns stay as they are.
_UPSERT = """
    insert into leases (pool, ip, hostname, gateway, broadcast, netmask, dns, mac, seq)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?)
    on conflict (pool, ip) do update set hostname = excluded.hostname, gateway = excluded.gateway,
        broadcast = excluded.broadcast, netmask = excluded.netmask, dns = excluded.dns, mac = excluded.mac,
        seq = excluded.seq
"""


def _drop_free(db: Database, pool: str, keep: set[str]) -> None:
    for row in list(db["leases"].rows_where("pool = ?", [pool])):
        if row["ip"] in keep:
            continue
        if row["workspace_id"] is None:
            db["leases"].delete((pool, row["ip"]))
        else:
            log.warning(
                "%s left network pool %s but is leased to workspace %s; kept until released",
                row["ip"],
                pool,
                row["workspace_id"],
            )


def _new_mac(db: Database, prefix: str, rng: random.Random) -> str:
    while True:
        mac = prefix + "".join(f":{rng.randrange(256):02x}" for _ in range(3))
        if not db.execute("select 1 from leases where mac = ? or requested_mac = ?", [mac, mac]).fetchone():
            return mac


def _check_mac_free(db: Database, mac: str, pool: str, entry: PoolEntry) -> None:
    holder = one(db, _MAC_HOLDERS, [mac, mac, pool, entry.ip])
    if holder:
        raise NetworkPoolError(
            f"{entry.where or 'network pool ' + pool}: MAC {mac} of {entry.ip} is already used by {holder['ip']} "
            f"in network pool {holder['pool']}"
        )


def pool_names(db: Database) -> list[str]:
    return [row[0] for row in db.execute("select distinct pool from leases order by pool")]


def allocate(
    db: Database, workspace_id: int, nics: Sequence[NicRequest], *, allow_static: bool
) -> tuple[NetworkLease, ...]:
    """One lease per NIC, in the caller's transaction; raises before anything is kept."""
    leases = []
    for index, nic in enumerate(nics):
        row = _pick(db, nic, allow_static)
        acquisition, mac = _acquisition(nic, row), _requested_mac(db, nic, row, allow_static)
        db.execute(
            "update leases set workspace_id = ?, nic = ?, nic_index = ?, acquisition = ?, requested_mac = ? "
            "where pool = ? and ip = ?",
            [workspace_id, nic.name, index, acquisition, mac, row["pool"], row["ip"]],
        )
        leases.append(_lease(row | {"nic": nic.name, "acquisition": acquisition, "requested_mac": mac}))
    return tuple(leases)


def _pick(db: Database, nic: NicRequest, allow_static: bool) -> dict:
    pool = nic.association
    if not db.execute("select 1 from leases where pool = ? limit 1", [pool]).fetchone():
        raise InvalidMetadata(f"nic {nic.name}: there is no network pool named {pool!r}")
    if nic.acquisition == ACCEPT:
        return _pick_static(db, nic, allow_static)
    if nic.acquisition == ADVISORY and nic.ip:
        wanted = one(db, "select * from leases where pool = ? and ip = ? and workspace_id is null", [pool, nic.ip])
        if wanted is not None:
            return wanted
    row = one(db, "select * from leases where pool = ? and workspace_id is null order by seq limit 1", [pool])
    if row is None:
        raise SchedulingFailed(f"network pool {pool} has no free address")
    return row


def _acquisition(nic: NicRequest, row: dict) -> str:
    """How the address was acquired: Accept when it is the one the client asked for."""
    return ACCEPT if nic.acquisition in (ACCEPT, ADVISORY) and nic.ip == row["ip"] else ALLOCATE


def _requested_mac(db: Database, nic: NicRequest, row: dict, allow_static: bool) -> str | None:
    """The NIC's own MAC, checked; None when it asked for none (the entry's MAC applies)."""
    if nic.mac is None:
        return None
    if not allow_static:
        raise RequestDenied(f"nic {nic.name}: requesting a MAC address is not allowed here")
    mac = nic.mac.lower()
    if not _MAC.match(mac):
        raise InvalidMetadata(f"nic {nic.name}: {nic.mac!r} is not a MAC address (six hex octets with colons)")
    if int(mac[:2], 16) & 0x01 or mac == "00:00:00:00:00:00":
        raise InvalidMetadata(f"nic {nic.name}: {nic.mac} is not a unicast MAC address")
    holder = one(db, _MAC_HOLDERS, [mac, mac, row["pool"], row["ip"]])
    if holder is None:
        return None if mac == row["mac"] else mac
    if holder["mac"] == mac:
        raise RequestDenied(f"nic {nic.name}: MAC {mac} belongs to {holder['ip']} of network pool {holder['pool']}")
    raise SchedulingFailed(f"nic {nic.name}: MAC {mac} is in use by workspace {holder['workspace_id']}")


def _pick_static(db: Database, nic: NicRequest, allow_static: bool) -> dict:
    if not allow_static:
        raise RequestDenied(f"nic {nic.name}: requesting a specific address (AcceptAndConfigure) is not allowed here")
    if not nic.ip:
        raise InvalidMetadata(f"nic {nic.name}: AcceptAndConfigure needs an ipAddress")
    row = one(db, "select * from leases where pool = ? and ip = ?", [nic.association, nic.ip])
    if row is None:
        raise RequestDenied(f"nic {nic.name}: {nic.ip} is not an address of network pool {nic.association}")
    if row["workspace_id"] is not None:
        raise SchedulingFailed(f"nic {nic.name}: {nic.ip} of network pool {nic.association} is already leased")
    return row


def release(db: Database, workspace_id: int) -> int:
    """Free every lease the workspace holds; a second call finds none and frees nothing."""
    cursor = db.execute(
        "update leases set workspace_id = null, nic = null, nic_index = null, acquisition = null, "
        "requested_mac = null where workspace_id = ?",
        [workspace_id],
    )
    return cursor.rowcount


def counts(db: Database) -> dict[str, tuple[int, int]]:
    """Per pool: how many addresses are leased and how many free."""
    query = "select pool, count(workspace_id), count(*) - count(workspace_id) from leases group by pool"
    return {pool: (leased, free) for pool, leased, free in db.execute(query)}


def leases_of(db: Database, workspace_id: int) -> tuple[NetworkLease, ...]:
    return leases_of_many(db, [workspace_id]).get(workspace_id, ())


def leases_of_many(db: Database, workspace_ids: list[int]) -> dict[int, tuple[NetworkLease, ...]]:
    """Each workspace's leases in NIC order, read in one query (one bound list, however many)."""
    found = select(
        db,
        "select * from leases where workspace_id in (select value from json_each(?)) order by workspace_id, nic_index",
        [json.dumps(workspace_ids)],
    )
    leases: dict[int, list[NetworkLease]] = {}
    for row in found:
        leases.setdefault(row["workspace_id"], []).append(_lease(row))
    return {workspace_id: tuple(held) for workspace_id, held in leases.items()}


def _lease(row: dict) -> NetworkLease:
    return NetworkLease(
        nic=row["nic"],
        pool=row["pool"],
        ip=row["ip"],
        hostname=row["hostname"],
        mac=row["requested_mac"] or row["mac"],
        gateway=row["gateway"],
        broadcast=row["broadcast"],
        netmask=row["netmask"],
        dns=row["dns"],
        acquisition=row["acquisition"] or ALLOCATE,
    )
