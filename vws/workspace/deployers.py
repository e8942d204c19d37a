"""The deployer threads: background work owed to workspaces, and the copies in flight.

Work too slow for a request (a bring-up copying an image, an unpropagation saving a
disk) runs here. A copy reports its progress, and stops at its next step when the
service is stopping (``Interrupted``) or a destroy is waiting for its workspace.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from vws.errors import Cancelled
from vws.pool.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Propagation:
    """How far the copy of a workspace's image to its node has got."""

    node: str
    done_bytes: int
    total_bytes: int


class Interrupted(Exception):
    """The service is stopping in the middle of background work."""


class Deployers:
    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deploy")
        # Workspaces a destroy is waiting for, and copies in flight: read by deployer threads.
        self._destroying: set[int] = set()
        self._propagations: dict[int, Propagation] = {}
        self._closing = threading.Event()

    def submit(self, work: Callable[..., None], *args: object) -> None:
        """Run ``work`` on a deployer thread; what it fails to handle is logged, not lost."""

        def logged() -> None:
            try:
                work(*args)
            except Exception:
                log.exception("background work %s%s failed", work.__name__, args)

        self._pool.submit(logged)

    def check_open(self) -> None:
        """Raise Interrupted once the service is stopping."""
        if self._closing.is_set():
            raise Interrupted

    @contextmanager
    def destroying(self, workspace_id: int) -> Iterator[None]:
        """While a destroy waits for the workspace, a copy of its image stops at its next step."""
        self._destroying.add(workspace_id)
        if workspace_id in self._propagations:
            log.info("workspace %s: destroyed while its image is copied; abandoning the copy", workspace_id)
        try:
            yield
        finally:
            self._destroying.discard(workspace_id)

    def tracked(self) -> dict[str, int]:
        """How many destroys wait and copies run now."""
        return {"destroys waiting": len(self._destroying), "copies in flight": len(self._propagations)}

    def is_destroying(self, workspace_id: int) -> bool:
        return workspace_id in self._destroying

    @contextmanager
    def watching(self, workspace_id: int, node: str) -> Iterator[Progress]:
        """The progress callback of one workspace's propagation, recorded while the copy runs."""
        try:
            yield self._watch(workspace_id, node)
        finally:
            self._propagations.pop(workspace_id, None)

    def propagation(self, workspace_id: int) -> Propagation | None:
        """How far the copy of the workspace's image has got, while one runs."""
        return self._propagations.get(workspace_id)

    def close(self) -> None:
        """Stop: a copy in flight stops at its next step, work not begun is dropped."""
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _watch(self, workspace_id: int, node: str) -> Progress:
        """Records the progress, logs every tenth (every 64 MB when the size is not known yet:
        total 0), and stops the copy when a destroy is waiting or the service is stopping."""
        logged = [-1]

        def progress(done: int, total: int) -> None:
            self.check_open()
            if workspace_id in self._destroying:
                raise Cancelled(f"workspace {workspace_id} is being destroyed")
            self._propagations[workspace_id] = Propagation(node, done, total)
            step = 10 * done // total if total > 0 else done >> 26
            if step != logged[0]:
                logged[0] = step
                if total > 0:
                    log.info("workspace %s: image to %s, %d%% of %d MB", workspace_id, node, 10 * step, total >> 20)
                else:
                    log.info("workspace %s: image to %s, %d MB so far", workspace_id, node, done >> 20)

        return progress
