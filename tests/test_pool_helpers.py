"""Helpers the pool tests share (no tests here): stores, test nodes, reservations, events."""

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from vws.clock import ManualClock
from vws.config import PoolConfig
from vws.errors import Cancelled
from vws.pool import nodes, testnode
from vws.pool.machine import DiskRequest, MachineRequest, NicRequest, Placement
from vws.pool.manager import PoolManager
from vws.pool.progress import ignore
from vws.pool.storage import volumes
from vws.store.database import Store

SMALL = MachineRequest(memory_mb=256, vcpus=1, root=DiskRequest("file://ttylinux-xen", "sda1"))
WITH_NIC = MachineRequest(
    memory_mb=256, vcpus=1, root=DiskRequest("file://ttylinux-xen", "sda1"), nics=(NicRequest("eth0", "public"),)
)


def open_pool(state: Path, config: PoolConfig | None = None, on_event=None) -> tuple[Store, PoolManager]:
    state.mkdir(parents=True, exist_ok=True)
    store = Store(state / "vws.sqlite")
    return store, PoolManager(store, config or PoolConfig(), ManualClock(), state, on_event=on_event)


def add_test_nodes(store: Store, directory: Path, specs: Sequence[tuple[str, int, int]], networks=("*",)) -> None:
    """Test-driver nodes: (name, memory MB, cpus) each, with its own node file."""
    with store.transaction() as db:
        for name, memory_mb, cpus in specs:
            uri = testnode.write_node(directory / f"{name}.xml", memory_mb, cpus)
            nodes.add_node(db, name, uri, memory_mb, cpus, networks)


def insert_rows(db, machine: MachineRequest, count: int) -> list[int]:
    """Workspace rows as the workspace layer inserts them before placement (node still NULL)."""
    row = {
        "owner": "/O=Grid/CN=test",
        "state": "Unpropagated",
        "memory_mb": machine.memory_mb,
        "vcpus": machine.vcpus,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "termination_time": "2026-01-02T00:00:00.000000Z",
        "request": "{}",
    }
    return [db["workspaces"].insert(row).last_pk for _ in range(count)]


def reserve(
    store: Store, pool: PoolManager, machine: MachineRequest, count: int = 1, *, allow_static: bool = False
) -> list[Placement]:
    """What the workspace layer does: describe the nodes, then insert rows, place, write node/domain,
    one transaction."""
    pool.describe_nodes()
    with store.transaction() as db:
        ids = insert_rows(db, machine, count)
        placements = pool.place(db, ids, machine, allow_static=allow_static)
        for placement in placements:
            db["workspaces"].update(placement.workspace_id, {"node": placement.node, "domain": placement.domain})
    return placements


def destroy(store: Store, pool: PoolManager, placement: Placement) -> None:
    """Remove the domain, then in one transaction mark the workspace gone and free its leases."""
    pool.remove(placement.node, placement.domain)
    with store.transaction() as db:
        db["workspaces"].update(placement.workspace_id, {"destroyed_at": "2026-01-01T01:00:00.000000Z"})
        pool.forget(db, placement.workspace_id)


def live_rows(store: Store) -> int:
    with store.reading() as db:
        return db.execute("select count(*) from workspaces").fetchone()[0]


def raised_within(call: Callable[[], object], seconds: float = 10) -> BaseException | None:
    """What ``call``, run in a thread of its own, raised (None: it returned); it must end within
    ``seconds``, which is waited for on an event (a call that blocks on and on fails the test)."""
    done = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), f"still blocked after {seconds} s"
    return raised[0] if raised else None


def cancel(done: int, total: int) -> None:
    """The progress of a define whose workspace is being destroyed."""
    raise Cancelled("the workspace is being destroyed")


class Events:
    """Collects lifecycle events; ``wait_for`` blocks on a condition, never on a sleep."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, node: str, domain: str, event: str) -> None:
        with self._changed:
            self.seen.append((node, domain, event))
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, str, str]]], bool], timeout: float = 10) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.seen), timeout)


def stand_in_uploads(monkeypatch) -> list[str]:
    """The test driver has no virStorageVolUpload: names of the volumes "uploaded" instead, made at
    the source's size, allocated as if its bytes were sent."""
    sent: list[str] = []

    def upload(self: volumes.NodeVolumes, name: str, source: Path, progress=ignore) -> Path:
        sent.append(name)
        size = f"{source.stat().st_size}"
        xml = f"<volume><name>{name}</name><capacity>{size}</capacity><allocation>{size}</allocation></volume>"
        path = Path(self._pool.createXML(xml, 0).path())
        progress(int(size), int(size))  # as a real upload's last report
        return path

    monkeypatch.setattr(volumes.NodeVolumes, "upload", upload)
    return sent
