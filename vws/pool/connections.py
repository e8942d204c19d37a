"""The pool's libvirt connections: one Driver per node, opened on first use, reopened when it dies.

A test-driver node is opened from a copy of its node file that holds the domains the pool
recorded, in their recorded states (``testnode.restored``), so what it runs after a restart
matches what it ran before; what it hosts is read from its base file alone (``describing``).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vws.clock import Clock
from vws.pool import nodes, testnode
from vws.pool.driver import Driver, EventCallback
from vws.store.database import Store


class Connections:
    def __init__(self, store: Store, clock: Clock, state_dir: Path, on_event: EventCallback | None) -> None:
        self._store = store
        self._clock = clock
        self._dir = state_dir
        self._on_event = on_event
        self._drivers: dict[str, Driver] = {}
        self._opening: dict[str, threading.Lock] = {}  # per node: held while its connection opens
        self._guard = threading.Lock()

    def driver(self, name: str) -> Driver:
        with self._guard:
            driver = self._drivers.get(name)
            if driver is not None:
                return driver
            opening = self._opening.setdefault(name, threading.Lock())
        with opening:  # a node slow to open (a big test node file, a remote host) holds up no other
            with self._guard:
                driver = self._drivers.get(name)
            if driver is None:
                driver = self._open(name)
                with self._guard:
                    self._drivers[name] = driver
            return driver

    @contextmanager
    def describing(self, name: str) -> Iterator[Driver]:
        """A driver to read the node's facts from (capabilities, architectures, version): its own
        once open; until then, for a test node, one on its base file alone. Those facts do not
        depend on the domains, and opening the node with them (what a restart takes up in the
        background) takes a while with thousands: a create need not wait for it."""
        with self._guard:
            opened = self._drivers.get(name)
        with self._store.reading() as db:
            uri = nodes.get_node(db, name).uri
        if opened is not None or testnode.file_of(uri) is None:
            yield opened or self.driver(name)
            return
        base = Driver(name, uri, self._clock)  # hears no events: it defines nothing
        try:
            yield base
        finally:
            base.close()

    def healthy(self, name: str) -> Driver:
        """The node's driver, reopened when its connection died."""
        with self._guard:
            driver = self._drivers.get(name)
            if driver is not None and not driver.alive():
                driver.close()
                del self._drivers[name]
        return self.driver(name)

    def close(self) -> None:
        with self._guard:
            drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            driver.close()

    def _open(self, name: str) -> Driver:
        with self._store.reading() as db:
            node = nodes.get_node(db, name)
            recorded = db.execute("select xml, state from pool_domains where node = ?", [name]).fetchall()
        uri = testnode.restored(node.uri, recorded, self._dir / "nodes" / name / "libvirt-node.xml")
        return Driver(name, uri, self._clock, self._on_event)
