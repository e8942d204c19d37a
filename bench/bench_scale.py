"""The scale run: create and GetResourceProperty p50 at 10 and at 10,000 live workspaces, and restart times.

One service on one big test-driver node (bench/common.py big_pool), every workspace Running
with one NIC. At each size: the restart (stop, then a new Service): the seconds until its
first answer (GetResourceProperty of the oldest workspace), until a create is answered, and
until its nodes are taken up (connected, cut-off work finished, domains compared with the
store: in the background, see vws/workspace/recovery.py); then ``--creates`` creates one after another (each also starts
its bring-up in the background, as in production) and ``--gets`` GetResourceProperty
currentState calls. The live workspaces are made over HTTP by 4 client threads.

Targets (issue #16): create p50 at 10,000 live within 1.3x of at 10; the first answer
after a restart as soon at 10,000 live as at 10.

    python bench/bench_scale.py [--live 10000] [--few 10] [--creates 200] [--gets 500]
"""

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import big_pool, timed

from tests.gt4wire import Gt4Client, created_eprs
from vws import state_dir
from vws.config import Config
from vws.service import Service
from vws.workspace.records import Workspace
from vws.workspace.states import State
from vws.wsrf.addressing import EndpointReference, key_property
from vws.xmlns import TYPES, WORKSPACE, qname

FILLERS = 4
KEY = qname(WORKSPACE, "WorkspaceKey")


class Scale:
    """A service whose workspaces are made over HTTP and counted as they reach Running."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._running = threading.Semaphore(0)
        self.live = 0
        self.service = self._start()

    def _start(self) -> Service:
        service = Service(self._config)
        service.manager.add_listener(self._seen)
        service.start()
        return service

    def _seen(self, workspace: Workspace) -> None:
        if workspace.state is State.RUNNING:
            self._running.release()

    def client(self) -> Gt4Client:
        return Gt4Client(self.service.base_url)

    def fill(self, target: int) -> float:
        """Create workspaces until ``target`` live, every one Running; the seconds it took."""
        started, count = time.perf_counter(), target - self.live
        shares = [count // FILLERS + (n < count % FILLERS) for n in range(FILLERS)]
        threads = [threading.Thread(target=self._create, args=(share,)) for share in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._await_running(count)
        return time.perf_counter() - started

    def _create(self, count: int) -> None:
        client = self.client()
        for _ in range(count):
            client.create()
        client.close()

    def _await_running(self, count: int) -> None:
        for _ in range(count):
            assert self._running.acquire(timeout=600), "a workspace did not reach Running"
        self.live += count

    def restart(self) -> dict[str, float]:
        """Stop, then the seconds until a new service answers, and until its nodes are taken up."""
        self.service.stop()
        started = time.perf_counter()
        self.service = self._start()
        client = self.client()
        oldest = EndpointReference(self.service.base_url + "WorkspaceService", (key_property(KEY, "1"),))
        client.get_property(oldest, qname(TYPES, "currentState"))
        figures = {"restart: first answer": time.perf_counter() - started}
        client.create()  # live from now on, brought up once its node is taken up
        figures["restart: first create answered"] = time.perf_counter() - started
        client.close()
        self.service.manager.recovered()
        figures["restart: nodes taken up"] = time.perf_counter() - started
        self._await_running(1)
        return figures

    def measure(self, creates: int, gets: int) -> dict[str, float]:
        """create and GetResourceProperty p50 in ms, wall and CPU of the process (client, service and
        background threads: less moved by other load on the machine); the creates stay live."""
        client = self.client()
        (epr,) = created_eprs(client.create())
        self._await_running(1)
        figures = {}
        for clock, name in ((time.perf_counter, "wall"), (time.process_time, "CPU")):
            figures[f"create p50 ({name})"] = statistics.median(timed(client.create, creates, 0, clock)) * 1e3
            self._await_running(creates)
        state = qname(TYPES, "currentState")
        for clock, name in ((time.perf_counter, "wall"), (time.process_time, "CPU")):
            figures[f"GetResourceProperty p50 ({name})"] = (
                statistics.median(timed(lambda: client.get_property(epr, state), gets, clock=clock)) * 1e3
            )
        client.close()
        return figures


def line(label: str, value: float, unit: str) -> None:
    print(f"{label:<52} {value:9.2f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=10000, help="the large number of live workspaces")
    parser.add_argument("--few", type=int, default=10, help="the small one")
    parser.add_argument("--creates", type=int, default=200, help="creates timed at each size")
    parser.add_argument("--gets", type=int, default=500, help="GetResourceProperty calls timed at each size")
    args = parser.parse_args()
    state_dir.keep_private()  # as vws-service does
    with tempfile.TemporaryDirectory() as root:
        config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=Path(root) / "state", insecure=True)
        pool = big_pool(Path(root), args.live + 2 * args.creates + 100)
        scale = Scale(config.with_overrides("pool", **pool))
        figures: dict[int, dict[str, float]] = {}
        try:
            for size in (args.few, args.live):
                made = scale.fill(size - 1)  # measure() makes one more: the one it GETs
                line(f"made {size - 1:,} live (Running) in", made, "s")
                figures[size] = scale.restart()
                figures[size].update(scale.measure(args.creates, args.gets))
                for name, value in figures[size].items():
                    line(f"at {size:,} live: {name}", value, "s" if name.startswith("restart") else "ms")
        finally:
            scale.service.stop()
        for name, few in figures[args.few].items():
            target = " (target <= 1.3x)" if name.startswith("create") else ""
            line(f"{name}: at {args.live:,} / at {args.few:,}", figures[args.live][name] / few, f"x{target}")


if __name__ == "__main__":
    main()
