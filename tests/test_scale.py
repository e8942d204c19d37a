"""What one request costs does not grow with how many workspaces live."""

import gc

import spyne.context

from tests import resources
from tests.gt4wire import created_eprs


def test_answering_runs_no_full_garbage_collection(service, gt4, monkeypatch):
    # spyne's own once-a-second gc.collect() walked every object of the process (0.5 s at
    # 10,000 live workspaces) inside a request, holding the GIL against all the others.
    (epr,) = created_eprs(gt4.create())
    monkeypatch.setattr(spyne.context, "_LAST_GC_RUN", 0.0)  # its next pass is due
    full = []

    def collected(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(info)

    gc.disable()  # only a collection someone asks for runs now
    gc.callbacks.append(collected)
    try:
        assert gt4.state(epr) == "Running"
    finally:
        gc.callbacks.remove(collected)
        gc.enable()
    assert full == []


def _steps_of(service, call) -> int:  # type: ignore[no-untyped-def]
    """SQLite virtual-machine steps (in hundreds) the writing connection runs while ``call`` does."""
    steps = []
    service.store.db.conn.set_progress_handler(lambda: steps.append(1), 100)
    try:
        call()
    finally:
        service.store.db.conn.set_progress_handler(None, 0)
    return len(steps)


def test_placing_a_workspace_reads_no_more_with_thousands_placed(service, gt4):
    def create() -> None:  # Unpropagated: no background work runs beside it
        resources.create(gt4, resources.create_request(initial_state="Unpropagated"))

    create()  # warm: the first create of a process reads the schema
    few = _steps_of(service, create)
    with service.store.transaction() as db:  # 5,000 more live placements, of no size, on the one node
        db.conn.executemany(
            "insert into pool_placements (workspace_id, node, memory_mb, vcpus, held) values (?, 'node1', 0, 0, 1)",
            [(1_000_000 + n,) for n in range(5000)],
        )
    many = _steps_of(service, create)
    # Before: every placement summed, twice per create (1,322 against 24). What may grow is the
    # capacity calendar's R*Tree insert, with the tree's depth: logarithmic, a few steps.
    assert many <= few * 3 // 2, (few, many)
