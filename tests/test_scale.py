"""What one request costs does not grow with how many workspaces live."""

import gc

import spyne.context

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
