"""Network pools: the file format, sync, leases, static addresses, release exactly once."""

from pathlib import Path

import pytest

from tests.test_pool_helpers import SMALL, WITH_NIC, destroy, open_pool, reserve
from vws.config import PoolConfig
from vws.errors import BackendError, InvalidMetadata, RequestDenied, SchedulingFailed
from vws.pool import network, nodes
from vws.pool.machine import MachineRequest, NicRequest
from vws.pool.network import NetworkPoolError, parse_pool

REPO_SAMPLE = Path(__file__).resolve().parents[1] / "etc" / "network-pools" / "public"


def test_format_dns_entries_none_and_comments():
    pool = parse_pool(
        "lab",
        """
        # the lab network
        none
        a 10.1.2.3 10.1.2.1 10.1.2.255 255.255.255.0 AA:BB:CC:00:00:01  # with MAC
        b 10.1.2.4 none none none
        """,
    )
    assert pool.dns is None
    first, second = pool.entries
    assert (first.hostname, first.gateway, first.broadcast, first.netmask, first.mac) == (
        "a", "10.1.2.1", "10.1.2.255", "255.255.255.0", "aa:bb:cc:00:00:01",
    )  # fmt: skip
    assert (second.gateway, second.broadcast, second.netmask, second.mac) == (None, None, None, None)


def test_missing_netmask_and_broadcast_come_from_the_address_class():
    pool = parse_pool("p", "8.8.8.8\nc 192.168.5.9 192.168.5.1\nb 172.16.3.4 none\na 10.0.0.7 none 10.255.255.255\n")
    c, b, a = pool.entries
    assert (c.netmask, c.broadcast) == ("255.255.255.0", "192.168.5.255")
    assert (b.netmask, b.broadcast) == ("255.255.0.0", "172.16.255.255")
    assert (a.netmask, a.broadcast) == ("255.0.0.0", "10.255.255.255")


@pytest.mark.parametrize(
    "text",
    ["not-an-ip\n", "none\nhost 10.0.0.300 none\n", "none\nhost\n", "none\nh 10.0.0.1 none none none zz:zz\n",
     "none\na 10.0.0.1 none\nb 10.0.0.1 none\n"],
)  # fmt: skip
def test_malformed_pool_files_are_refused(text):
    with pytest.raises(NetworkPoolError):
        parse_pool("bad", text)


def test_bad_mac_prefixes_are_refused():
    assert network.check_mac_prefix("A2:AA:BB") == "a2:aa:bb"
    with pytest.raises(NetworkPoolError, match="multicast"):
        network.check_mac_prefix("A3:AA:BB")
    with pytest.raises(NetworkPoolError):
        network.check_mac_prefix("A2:AA")


def test_the_shipped_sample_matches_the_embedded_default():
    assert REPO_SAMPLE.read_text() == network.SAMPLE_TEXT
    pool = parse_pool("public", REPO_SAMPLE.read_text())
    assert len(pool.entries) == 10 and pool.entries[0].hostname == "pub01"


def test_embedded_default_creates_the_public_pool(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    assert pool.associations() == ["public"]
    with store.reading() as db:
        macs = [row[0] for row in db.execute("select mac from leases")]
    assert len(macs) == len(set(macs)) == 10
    assert all(mac.startswith("a2:aa:bb:") for mac in macs)


def test_macs_are_stable_across_a_store_reopen(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, WITH_NIC)[0]
    with store.reading() as db:
        before = dict(db.execute("select ip, mac from leases").fetchall())
    pool.close()
    store.close()
    store, pool = open_pool(tmp_path / "state")
    with store.reading() as db:
        assert dict(db.execute("select ip, mac from leases").fetchall()) == before
        assert pool.leases(db, [placed.workspace_id]) == {placed.workspace_id: placed.leases}


def test_sync_adds_updates_and_drops_only_free_entries(tmp_path):
    pools = tmp_path / "pools"
    pools.mkdir()
    (pools / "lab").write_text("none\na 10.0.0.1 none\nb 10.0.0.2 none\nc 10.0.0.3 none\n")
    config = PoolConfig(network_pools_dir=pools)
    store, pool = open_pool(tmp_path / "state", config)
    machine = MachineRequest(memory_mb=64, nics=(NicRequest("eth0", "lab"),))
    held = reserve(store, pool, machine)[0].leases[0]
    assert held.ip == "10.0.0.1"
    with store.reading() as db:
        mac_b = db.execute("select mac from leases where ip = '10.0.0.2'").fetchone()[0]
    pool.close()
    # a and b leave the file, d arrives, b's hostname would change
    (pools / "lab").write_text("10.0.0.53\nc 10.0.0.3 10.0.0.254\nd 10.0.0.4 none\n")
    store, pool = open_pool(tmp_path / "state", config)
    with store.reading() as db:
        rows = {row[0]: row[1:] for row in db.execute("select ip, workspace_id, gateway, dns, mac from leases")}
    assert set(rows) == {"10.0.0.1", "10.0.0.3", "10.0.0.4"}  # assigned a kept, free b dropped
    assert rows["10.0.0.1"][0] == 1 and rows["10.0.0.1"][3] == held.mac  # untouched
    assert rows["10.0.0.3"][1:3] == ("10.0.0.254", "10.0.0.53")  # free entry updated
    assert mac_b not in {row[3] for row in rows.values()}


def test_a_sync_of_unchanged_pool_files_writes_nothing(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    reserve(store, pool, WITH_NIC)
    pools = network.read_pools(tmp_path / "state" / "network-pools")
    written = []
    with store.transaction() as db:
        db.conn.set_trace_callback(lambda sql: written.append(sql) if not sql.lstrip().startswith("select") else None)
        network.sync(db, pools, "A2:AA:BB")
        db.conn.set_trace_callback(None)
    assert [sql for sql in written if "leases" in sql] == []


def test_a_restart_with_the_same_pool_files_reads_no_address(tmp_path):
    store, pool = open_pool(tmp_path / "state")  # its start synced the sample pool
    files = network.read_files(tmp_path / "state" / "network-pools")
    run: list[str] = []
    with store.transaction() as db:
        db.conn.set_trace_callback(run.append)
        network.sync_files(db, files, PoolConfig().mac_prefix)
        db.conn.set_trace_callback(None)
    assert [sql for sql in run if "leases" in sql] == []
    grown = {path: text + "pub99 192.168.128.99 none\n" for path, text in files.items()}
    with store.transaction() as db:
        network.sync_files(db, grown, PoolConfig().mac_prefix)
    assert pool.lease_counts() == {"public": (0, 11)}


def test_ip_exhaustion_names_the_pool(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    with store.transaction() as db:
        nodes.update_node(db, "node1", cpus=16)  # the embedded node's 8 CPUs would run out first
    reserve(store, pool, WITH_NIC, 10)
    with pytest.raises(SchedulingFailed, match="network pool public has no free address"):
        reserve(store, pool, WITH_NIC)


def test_unknown_pool_is_a_request_error(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    with pytest.raises(InvalidMetadata, match="no network pool named 'nowhere'"):
        reserve(store, pool, MachineRequest(memory_mb=64, nics=(NicRequest("eth0", "nowhere"),)))


def static(ip: str) -> MachineRequest:
    return MachineRequest(memory_mb=64, nics=(NicRequest("eth0", "public", "AcceptAndConfigure", ip=ip),))


def test_static_address_when_allowed_and_free(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    lease = reserve(store, pool, static("192.168.128.15"), allow_static=True)[0].leases[0]
    assert (lease.ip, lease.hostname, lease.acquisition) == ("192.168.128.15", "pub06", "AcceptAndConfigure")
    with pytest.raises(SchedulingFailed, match="already leased"):
        reserve(store, pool, static("192.168.128.15"), allow_static=True)
    with pytest.raises(RequestDenied, match="not an address of network pool public"):
        reserve(store, pool, static("10.9.9.9"), allow_static=True)


def test_static_address_refused_when_not_allowed(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    with pytest.raises(RequestDenied, match="AcceptAndConfigure"):
        reserve(store, pool, static("192.168.128.15"), allow_static=False)


def test_release_happens_once_and_never_frees_a_new_holder(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    first = reserve(store, pool, WITH_NIC)[0]
    destroy(store, pool, first)
    second = reserve(store, pool, WITH_NIC)[0]
    assert second.leases[0].ip == first.leases[0].ip  # the address came back once...
    with store.transaction() as db:
        pool.release_leases(db, first.workspace_id)  # ...and a second release of the first frees nothing
        assert pool.leases(db, [second.workspace_id]) == {second.workspace_id: second.leases}


def test_lease_is_kept_when_remove_fails_and_released_once_after(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, WITH_NIC)[0]
    pool.define(placed, WITH_NIC)
    pool.start(placed.node, placed.domain)
    pool._driver(placed.node)._conn.close()  # the node's connection dies under the pool
    with pytest.raises(BackendError):
        pool.remove(placed.node, placed.domain)
    with pytest.raises(BackendError, match="leases stay held"), store.transaction() as db:
        pool.release_leases(db, placed.workspace_id)  # the workspace layer must not get here; if it does: refused
    with store.reading() as db:
        assert pool.leases(db, [placed.workspace_id]) == {placed.workspace_id: placed.leases}
    other = reserve(store, pool, WITH_NIC)[0]
    assert other.leases[0].ip != placed.leases[0].ip  # not handed out twice (Nimbus #101)
    assert pool.domain_states()[(placed.node, placed.domain)] == "running"  # reconnected, domain still there
    destroy(store, pool, placed)
    with store.reading() as db:
        free = db.execute("select workspace_id from leases where ip = ?", [placed.leases[0].ip]).fetchone()[0]
    assert free is None


def test_no_nics_no_leases(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    assert reserve(store, pool, SMALL)[0].leases == ()


# ---- requested MACs and Advisory addresses ---------------------------------------------------


def nic(acquisition: str = "AllocateAndConfigure", *, mac: str | None = None, ip: str | None = None):
    return MachineRequest(memory_mb=64, nics=(NicRequest("eth0", "public", acquisition, mac=mac, ip=ip),))


def test_a_requested_mac_is_used_while_leased_and_the_entry_keeps_its_own(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    machine = nic(mac="A2:AA:BB:12:34:56")
    placed = reserve(store, pool, machine, allow_static=True)[0]
    assert placed.leases[0].mac == "a2:aa:bb:12:34:56"
    pool.define(placed, machine)
    assert "<mac address='a2:aa:bb:12:34:56'/>" in pool._driver(placed.node).xml(placed.domain)
    with store.reading() as db:
        assert pool.leases(db, [placed.workspace_id])[placed.workspace_id][0].mac == "a2:aa:bb:12:34:56"
        own = db.execute("select mac from leases where ip = ?", [placed.leases[0].ip]).fetchone()[0]
    destroy(store, pool, placed)
    again = reserve(store, pool, nic())[0].leases[0]
    assert (again.ip, again.mac) == (placed.leases[0].ip, own)  # released: the entry's own MAC again


def test_a_requested_mac_needs_the_static_policy(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    with pytest.raises(RequestDenied, match="requesting a MAC address is not allowed"):
        reserve(store, pool, nic(mac="a2:aa:bb:12:34:56"))
    with store.reading() as db:
        assert db.execute("select count(*) from leases where workspace_id is not null").fetchone()[0] == 0


@pytest.mark.parametrize(
    "mac, problem",
    [
        ("a2:aa:bb:12:34", "not a MAC address"),
        ("a2-aa-bb-12-34-56", "not a MAC address"),
        ("a2:aa:bb:12:34:5g", "not a MAC address"),
        ("a3:aa:bb:12:34:56", "not a unicast MAC"),
        ("ff:ff:ff:ff:ff:ff", "not a unicast MAC"),
        ("00:00:00:00:00:00", "not a unicast MAC"),
    ],
)
def test_a_malformed_or_multicast_mac_is_refused(tmp_path, mac, problem):
    store, pool = open_pool(tmp_path / "state")
    with pytest.raises(InvalidMetadata, match=problem):
        reserve(store, pool, nic(mac=mac), allow_static=True)


def test_a_mac_another_lease_uses_or_another_entry_owns_is_refused(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    reserve(store, pool, nic(mac="a2:aa:bb:12:34:56"), allow_static=True)
    with pytest.raises(SchedulingFailed, match="in use by workspace"):
        reserve(store, pool, nic(mac="A2:AA:BB:12:34:56"), allow_static=True)
    with store.reading() as db:
        last_ip, last_mac = db.execute("select ip, mac from leases order by seq desc limit 1").fetchone()
    with pytest.raises(RequestDenied, match=f"belongs to {last_ip} of network pool public"):
        reserve(store, pool, nic(mac=last_mac), allow_static=True)
    with pytest.raises(SchedulingFailed, match="in use by workspace"):  # two NICs of one request
        twice = NicRequest("eth0", "public", mac="a2:aa:bb:00:00:99")
        reserve(store, pool, MachineRequest(memory_mb=64, nics=(twice, twice)), allow_static=True)
    own = reserve(store, pool, nic("AcceptAndConfigure", ip=last_ip, mac=last_mac), allow_static=True)[0]
    assert own.leases[0].mac == last_mac  # an entry's own MAC asked for with its own address


def test_a_pool_file_may_not_take_a_mac_a_lease_requested(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    reserve(store, pool, nic(mac="a2:aa:bb:12:34:56"), allow_static=True)
    entry = "pub11 192.168.128.99 none none none a2:aa:bb:12:34:56\n"
    grown = network.parse_pool("public", network.SAMPLE_TEXT + entry)
    with pytest.raises(NetworkPoolError, match="a2:aa:bb:12:34:56"), store.transaction() as db:
        network.sync(db, [grown], "A2:AA:BB")


def test_advisory_takes_the_requested_address_when_free_else_allocates(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    taken = reserve(store, pool, nic("Advisory", ip="192.168.128.15"))[0].leases[0]
    assert (taken.ip, taken.acquisition) == ("192.168.128.15", "AcceptAndConfigure")  # no policy needed
    for wanted in ("192.168.128.15", "10.9.9.9", None):  # leased, outside the pool, none given
        lease = reserve(store, pool, nic("Advisory", ip=wanted))[0].leases[0]
        assert lease.acquisition == "AllocateAndConfigure" and lease.ip != "192.168.128.15"
