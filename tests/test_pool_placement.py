"""Placement: both policies over several test-driver nodes, limits, groups, draining."""

import re
from pathlib import Path

import pytest

from tests.test_pool_helpers import SMALL, WITH_NIC, add_test_nodes, destroy, live_rows, open_pool, reserve
from vws.config import PoolConfig
from vws.errors import SchedulingFailed
from vws.pool import nodes
from vws.pool.machine import MachineRequest, NicRequest
from vws.pool.placement import Demand, NodeLoad, greedy, place_group, round_robin

# ---- the pure functions -------------------------------------------------------------------


def loads() -> list[NodeLoad]:
    return [
        NodeLoad("a", memory_mb=4096, cpus=4, used_memory_mb=1024),
        NodeLoad("b", memory_mb=4096, cpus=4),
        NodeLoad("c", memory_mb=2048, cpus=4),
    ]


def test_round_robin_takes_most_free_memory_and_spreads():
    assert place_group(loads(), Demand(1024, 1), 3, round_robin) == ["b", "a", "b"]


def test_greedy_packs_the_fullest_node_that_fits():
    assert place_group(loads(), Demand(1024, 1), 3, greedy) == ["c", "c", "a"]


def test_ties_go_to_the_first_name():
    same = [NodeLoad("y", 1024, 1), NodeLoad("x", 1024, 1)]
    assert place_group(same, Demand(512, 1), 1, round_robin) == ["x"]
    assert place_group(same, Demand(512, 1), 1, greedy) == ["x"]


def test_unusable_and_unreachable_nodes_are_skipped():
    pool = [
        NodeLoad("down", 8192, 8, usable=False),
        NodeLoad("private-only", 8192, 8, networks=frozenset({"private"})),
        NodeLoad("small", 1024, 1, networks=frozenset({"public", "private"})),
    ]
    assert place_group(pool, Demand(512, 1, frozenset({"public"})), 1, round_robin) == ["small"]


def test_failure_names_the_exhausted_resource():
    with pytest.raises(SchedulingFailed, match="not enough memory"):
        place_group([NodeLoad("a", 1024, 8)], Demand(2048, 1), 1, round_robin)
    with pytest.raises(SchedulingFailed, match="not enough CPUs"):
        place_group([NodeLoad("a", 8192, 2)], Demand(512, 3), 1, round_robin)
    with pytest.raises(SchedulingFailed, match="network pool"):
        place_group([NodeLoad("a", 8192, 2, networks=frozenset({"x"}))], Demand(512, 1, frozenset({"y"})), 1, greedy)
    with pytest.raises(SchedulingFailed, match="2 of 3 placed; none are kept"):
        place_group([NodeLoad("a", 1024, 8)], Demand(512, 1), 3, greedy)


# ---- through PoolManager, derived from live workspace rows ----------------------------------


@pytest.fixture
def two_nodes(tmp_path):
    def make(policy: str):
        store, pool = open_pool(tmp_path / f"state-{policy}", PoolConfig(placement=policy))
        add_test_nodes(store, tmp_path / f"nodes-{policy}", [("big", 4096, 4), ("small", 2048, 4)])
        with store.transaction() as db:
            nodes.update_node(db, "node1", active=False)  # the embedded node stays out of the way
        return store, pool

    return make


def test_round_robin_spreads_over_nodes(two_nodes):
    store, pool = two_nodes("round-robin")
    machine = MachineRequest(memory_mb=1024, vcpus=1)
    assert [p.node for p in reserve(store, pool, machine, 4)] == [
        "big",
        "big",
        "big",
        "small",
    ]  # 3072 > 2048; tie at 2048 goes to "big"


def test_greedy_fills_the_fuller_node_first(two_nodes):
    store, pool = two_nodes("greedy")
    machine = MachineRequest(memory_mb=1024, vcpus=1)
    assert [p.node for p in reserve(store, pool, machine, 4)] == ["small", "small", "big", "big"]


def test_usage_is_derived_from_live_rows_and_freed_by_destruction(two_nodes):
    store, pool = two_nodes("greedy")
    machine = MachineRequest(memory_mb=2048, vcpus=1)
    first, second, third = reserve(store, pool, machine, 3)
    assert (first.node, second.node, third.node) == ("small", "big", "big")
    with pytest.raises(SchedulingFailed):
        reserve(store, pool, machine)
    destroy(store, pool, first)
    assert reserve(store, pool, machine)[0].node == "small"


def test_memory_exhaustion_holds_nothing(two_nodes):
    store, pool = two_nodes("round-robin")
    before = live_rows(store)
    with pytest.raises(SchedulingFailed, match="not enough memory"):
        reserve(store, pool, MachineRequest(memory_mb=4097, vcpus=1))
    assert live_rows(store) == before


def test_cpu_exhaustion_holds_nothing(two_nodes):
    store, pool = two_nodes("round-robin")
    reserve(store, pool, MachineRequest(memory_mb=128, vcpus=4), 2)
    with pytest.raises(SchedulingFailed, match="not enough CPUs"):
        reserve(store, pool, MachineRequest(memory_mb=128, vcpus=1))


def test_a_group_is_placed_whole_or_not_at_all(two_nodes):
    store, pool = two_nodes("round-robin")
    before = live_rows(store)
    with store.reading() as db:
        free_before = db.execute("select count(*) from leases where workspace_id is null").fetchone()[0]
    with pytest.raises(SchedulingFailed, match="none are kept"):
        reserve(store, pool, MachineRequest(memory_mb=1024, vcpus=1, nics=WITH_NIC.nics), 7)
    assert live_rows(store) == before
    with store.reading() as db:
        assert db.execute("select count(*) from leases where workspace_id is null").fetchone()[0] == free_before
    assert len(reserve(store, pool, MachineRequest(memory_mb=1024, vcpus=1, nics=WITH_NIC.nics), 6)) == 6


def test_an_inactive_node_is_drained(two_nodes):
    store, pool = two_nodes("round-robin")
    placed = reserve(store, pool, MachineRequest(memory_mb=512, vcpus=1))[0]
    assert placed.node == "big"
    with store.transaction() as db:
        nodes.update_node(db, "big", active=False)
    assert {p.node for p in reserve(store, pool, MachineRequest(memory_mb=512, vcpus=1), 3)} == {"small"}
    with store.reading() as db:  # the workspace already there stays, and still counts
        assert nodes.usage(db)["big"].memory_mb == 512


def test_nodes_must_reach_the_nics_network_pool(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    add_test_nodes(store, tmp_path / "nodes", [("private-node", 8192, 8)], networks=("private",))
    with store.transaction() as db:
        nodes.update_node(db, "node1", networks=("private",))
    with pytest.raises(SchedulingFailed, match="reaches network pool"):
        reserve(store, pool, WITH_NIC)
    assert reserve(store, pool, SMALL)[0].node == "node1"  # no NIC: any node


def test_static_nic_in_a_pool_no_node_reaches_is_refused(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    machine = MachineRequest(
        memory_mb=64, nics=(NicRequest("eth0", "public", "AcceptAndConfigure", ip="192.168.128.12"),)
    )
    with store.transaction() as db:
        nodes.update_node(db, "node1", active=False)
    with pytest.raises(SchedulingFailed):
        reserve(store, pool, machine, allow_static=True)


def test_the_pool_reads_no_table_of_the_workspace_layer():
    """Each layer owns its tables: what the pool knows of reservations it records itself."""
    package = Path(__file__).resolve().parents[1] / "vws" / "pool"
    readers = [
        path.name
        for path in sorted(package.glob("*.py"))
        if re.search(r"\b(from|join|update|into)\s+(workspaces|workspace_events|ensembles)\b", path.read_text(), re.I)
    ]
    assert not readers


def test_what_a_node_holds_follows_the_pools_own_placements(tmp_path):
    store, pool = open_pool(tmp_path / "state")
    placed = reserve(store, pool, MachineRequest(memory_mb=512, vcpus=2))[0]
    with store.transaction() as db:
        db.execute("update workspaces set memory_mb = 1, vcpus = 1")  # the workspace layer's row: not read
        assert nodes.usage(db)["node1"] == nodes.Usage(512, 2)
        pool.release_leases(db, placed.workspace_id)  # a failed deployment gives its share back...
        assert "node1" not in nodes.usage(db)
        with pytest.raises(nodes.NodeBusy):  # ...but the workspace still lives there
            nodes.remove_node(db, "node1")
        pool.forget(db, placed.workspace_id)  # gone
        assert nodes.remove_node(db, "node1").name == "node1"
