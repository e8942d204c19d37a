"""Node gates: after a restart, nothing changes a workspace until its node has been taken up again.

Taking a node up (see ``recovery``) means connecting to it, finishing the work a crash cut
off there and comparing its domains with the store. It runs in the background, node by
node, so a restarted service answers at once however many workspaces live: reads are
answered from the store meanwhile, and whatever would drive a domain or decide on a
workspace's state waits at its node's gate (``Records.locked``), so nothing is decided on
a view of the node that has not been checked yet. The thread taking a node up passes that
node's gate: it is the one doing what the others wait for.
"""

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class NodeGates:
    def __init__(self) -> None:
        self._closed: set[str] = set()  # nodes not taken up yet
        self._changed = threading.Condition()
        self._taking_up = threading.local()  # the node this thread is taking up, if any

    def close(self, nodes: Iterable[str]) -> None:
        """Hold work on ``nodes`` back until each is opened."""
        with self._changed:
            self._closed.update(nodes)

    def open(self, node: str) -> None:
        with self._changed:
            self._closed.discard(node)
            self._changed.notify_all()

    @property
    def all_open(self) -> bool:
        return not self._closed

    def passes(self, node: str | None) -> bool:
        """Whether this thread may change a workspace on ``node`` now (None: on no node)."""
        return node is None or node not in self._closed or node == getattr(self._taking_up, "node", None)

    def wait(self, node: str | None) -> None:
        """Return once this thread may change a workspace on ``node``."""
        with self._changed:
            self._changed.wait_for(lambda: self.passes(node))

    @contextmanager
    def taking_up(self, node: str) -> Iterator[None]:
        """This thread takes ``node`` up: it passes the node's gate, which opens when it is done,
        whether or not that went well (what failed is logged, and the next round looks again)."""
        self._taking_up.node = node
        try:
            yield
        finally:
            self._taking_up.node = None
            self.open(node)
