"""Issue #14: advance-reservation admission against a full calendar, and renegotiation latency.

1. Admission of a reservation (the capacity check and the placement, in one transaction, what
   ``create`` does before writing its rows) against 10,000 admitted reservations over 100
   test-driver nodes, spread over 30 days. Target: under 5 ms p50.
2. Renegotiation on the test driver: a running workspace's memory ballooned 256 <-> 384 MB,
   in-process (WorkspaceManager.renegotiate) and over HTTP (SetResourceProperties).
"""

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import report, running_service, timed  # noqa: E402
from clients import resource  # noqa: E402
from tests.deployments import Gt4Remote, settler  # noqa: E402
from tests.gt4wire import Gt4Client, created_eprs  # noqa: E402
from tests.resources import create, create_request  # noqa: E402
from tests.test_pool_helpers import insert_rows  # noqa: E402
from vws.clock import ManualClock, timestamp  # noqa: E402
from vws.config import PoolConfig  # noqa: E402
from vws.pool import nodes, testnode  # noqa: E402
from vws.pool.calendar import Window  # noqa: E402
from vws.pool.machine import MachineRequest  # noqa: E402
from vws.pool.manager import PoolManager  # noqa: E402
from vws.store.database import Store  # noqa: E402
from vws.workspace.caller import SERVICE  # noqa: E402
from vws.workspace.renegotiation import AllocationChange  # noqa: E402
from vws.xmlns import WORKSPACE, qname  # noqa: E402

NODES = 100
ADMITTED = 10_000
DAYS = 30
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def calendar_pool(root: Path) -> tuple[Store, PoolManager]:
    """100 nodes of 64 GiB and 32 CPUs holding 10,000 admitted reservations of 1-4 GiB, 2-8 hours each."""
    state = root / "state"
    state.mkdir()
    store = Store(state / "vws.sqlite")
    pool = PoolManager(store, PoolConfig(), ManualClock(T0), state)
    rng = random.Random(14)
    with store.transaction() as db:
        nodes.remove_node(db, "node1")
        for index in range(NODES):
            uri = testnode.write_node(root / "nodes" / f"n{index:03d}.xml", 65536, 32)
            nodes.add_node(db, f"n{index:03d}", uri, 65536, 32)
        rows = []
        for workspace_id in range(1_000_001, 1_000_001 + ADMITTED):  # clear of the ids admit() gets
            start = T0 + timedelta(minutes=rng.randrange(DAYS * 24 * 60))
            end = start + timedelta(hours=rng.randint(2, 8))
            rows.append(
                {
                    "workspace_id": workspace_id,
                    "node": f"n{rng.randrange(NODES):03d}",
                    "memory_mb": 1024 * rng.randint(1, 4),
                    "vcpus": rng.randint(1, 2),
                    "held": 1,
                    "starts_at": timestamp(start),
                    "ends_at": timestamp(end),
                }
            )
        db["pool_placements"].insert_all(rows)
    return store, pool


def bench_admission() -> None:
    machine = MachineRequest(memory_mb=2048, vcpus=1)
    rng = random.Random(41)
    with tempfile.TemporaryDirectory() as root:
        store, pool = calendar_pool(Path(root))

        def admit() -> None:
            start = T0 + timedelta(minutes=rng.randrange(DAYS * 24 * 60))
            window = Window(start, start + timedelta(hours=4))
            with store.transaction() as db:
                ids = insert_rows(db, machine, 1)
                pool.check_room(db, machine, 1, window)
                pool.place(db, ids, machine, allow_static=False, window=window)

        name = f"admit a reservation, {ADMITTED:,} admitted / {NODES} nodes"
        report(name, timed(admit, 500, warmup=20))
        # CPU seconds per admission: what other load on a shared machine disturbs less.
        report("  ...CPU time", timed(admit, 500, warmup=0, clock=time.process_time))
        pool.close()
        store.close()


def bench_renegotiation() -> None:
    with running_service(pool={"live_headroom_percent": 100}) as service:
        client = Gt4Client(service.base_url, settle=settler(service))
        (epr,) = created_eprs(create(client, create_request(memory_mb=256)))
        workspace_id = int(epr.key(qname(WORKSPACE, "WorkspaceKey")))
        sizes = iter([384, 256] * 1000)

        def in_process() -> None:
            service.manager.renegotiate(SERVICE, workspace_id, AllocationChange(memory_mb=next(sizes)))

        report("renegotiate memory, in-process", timed(in_process, 200, warmup=10, clock=time.perf_counter))

        def over_http() -> None:
            resource.renegotiate(Gt4Remote(client), epr, memory_mb=next(sizes))

        report("renegotiate memory, SetResourceProperties", timed(over_http, 200, warmup=10))
        client.close()


if __name__ == "__main__":
    bench_admission()
    bench_renegotiation()
