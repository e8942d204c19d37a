"""The pool layer alone: placement at scale, and define+start on the libvirt test driver.

1. Placement of 1,000 workspaces over 100 test-driver nodes, one reservation transaction
   each (what a stream of create requests does), without and with a NIC lease; then one
   group of 1,000 placed in a single call.
2. define+start latency with a 1 GB sparse root image: a cache hit (base already on the
   node, checksum known: only the qcow2 overlay is written) against a cache miss (new
   content: sha256 of the whole file, sparse copy to the node cache, then the overlay).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_pool_helpers import insert_rows  # noqa: E402
from vws.clock import ManualClock  # noqa: E402
from vws.config import PoolConfig  # noqa: E402
from vws.pool import nodes, testnode  # noqa: E402
from vws.pool.machine import DiskRequest, MachineRequest, NicRequest  # noqa: E402
from vws.pool.manager import PoolManager  # noqa: E402
from vws.store.database import Store  # noqa: E402

NODES = 100
WORKSPACES = 1000
GIB = 1 << 30


def open_pool(state: Path, **config: object) -> tuple[Store, PoolManager]:
    state.mkdir(parents=True, exist_ok=True)
    store = Store(state / "vws.sqlite")
    return store, PoolManager(store, PoolConfig(**config), ManualClock(), state)


def reserve(store: Store, pool: PoolManager, machine: MachineRequest, count: int = 1, timing: list | None = None):
    pool.describe_nodes()  # as creation does, before its transaction
    with store.transaction() as db:
        ids = insert_rows(db, machine, count)
        started = time.perf_counter()
        placements = pool.place(db, ids, machine, allow_static=False)
        if timing is not None:
            timing.append(time.perf_counter() - started)
        for placement in placements:
            db.execute(
                "update workspaces set node = ?, domain = ? where id = ?",
                [placement.node, placement.domain, placement.workspace_id],
            )
    return placements


def cluster(root: Path, policy: str) -> tuple[Store, PoolManager]:
    pools = root / "pools"
    pools.mkdir(parents=True)
    lines = [f"h{n:04d} 10.{n // 65536}.{n // 256 % 256}.{n % 256} none" for n in range(1, WORKSPACES + 1)]
    (pools / "big").write_text("none\n" + "\n".join(lines) + "\n")
    store, pool = open_pool(root / "state", placement=policy, network_pools_dir=pools)
    with store.transaction() as db:
        nodes.remove_node(db, "node1")
        for index in range(NODES):
            uri = testnode.write_node(root / "nodes" / f"n{index:03d}.xml", 16384, 16)
            nodes.add_node(db, f"n{index:03d}", uri, 16384, 16)
    return store, pool


def bench_placement() -> None:
    plain = MachineRequest(memory_mb=1024, vcpus=1)
    with_nic = MachineRequest(memory_mb=1024, vcpus=1, nics=(NicRequest("eth0", "big"),))
    for policy in ("round-robin", "greedy"):
        for label, machine in (("no NIC", plain), ("1 NIC lease", with_nic)):
            with tempfile.TemporaryDirectory() as root:
                store, pool = cluster(Path(root), policy)
                placing: list[float] = []
                started = time.perf_counter()
                for _ in range(WORKSPACES):
                    reserve(store, pool, machine, timing=placing)
                total = time.perf_counter() - started
                pool.close()
                store.close()
            name = f"place() x{WORKSPACES} one by one, {NODES} nodes, {policy}, {label}"
            print(
                f"{name:<66} total {sum(placing) * 1e3:8.1f} ms  per placement {statistics.mean(placing) * 1e6:7.1f} us"
            )
            name = "  ...with the row insert and commit around each"
            print(f"{name:<66} total {total * 1e3:8.1f} ms  per create    {total / WORKSPACES * 1e6:7.1f} us")
        with tempfile.TemporaryDirectory() as root:
            store, pool = cluster(Path(root), policy)
            started = time.perf_counter()
            reserve(store, pool, with_nic, WORKSPACES)
            total = time.perf_counter() - started
            pool.close()
            store.close()
        name = f"place one group of {WORKSPACES}, {NODES} nodes, {policy}, 1 NIC"
        print(f"{name:<66} total {total * 1e3:8.1f} ms  per placement {total / WORKSPACES * 1e6:7.1f} us")


def percentiles(name: str, latencies: list[float]) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    print(f"{name:<66} p50 {p50 * 1e3:9.3f} ms  p99 {p99 * 1e3:9.3f} ms  (n={len(ordered)})")
    return p50


def define_start(store: Store, pool: PoolManager, machine: MachineRequest) -> float:
    placement = reserve(store, pool, machine)[0]
    started = time.perf_counter()
    pool.define(placement, machine)
    pool.start(placement.node, placement.domain)
    elapsed = time.perf_counter() - started
    pool.remove(placement.node, placement.domain)
    with store.transaction() as db:
        db.execute("update workspaces set destroyed_at = 'x' where id = ?", [placement.workspace_id])
        pool.release_leases(db, placement.workspace_id)
    return elapsed


def bench_define_start() -> None:
    with tempfile.TemporaryDirectory() as root:
        store, pool = open_pool(Path(root) / "state")
        with store.transaction() as db:
            nodes.update_node(db, "node1", cpus=64)
        images = pool.repository.root

        def image(name: str) -> MachineRequest:
            with open(images / name, "wb") as file:  # 1 GB sparse, a few unique bytes: new content
                file.write(name.encode())
                file.truncate(GIB)
            return MachineRequest(memory_mb=256, root=DiskRequest(f"file://{name}", "sda1"))

        hit = image("hit.raw")
        define_start(store, pool, hit)  # puts the base in the node cache
        hits = [define_start(store, pool, hit) for _ in range(500)]
        misses = [define_start(store, pool, image(f"miss-{index}.raw")) for index in range(10)]
        hit_p50 = percentiles("define+start, 1 GB sparse image, cache hit", hits)
        miss_p50 = percentiles("define+start, 1 GB sparse image, cache miss", misses)
        print(f"{'ratio cache miss / cache hit':<66} {miss_p50 / hit_p50:,.0f}x (p50)")
        pool.close()
        store.close()


def main() -> None:
    bench_placement()
    bench_define_start()


if __name__ == "__main__":
    main()
