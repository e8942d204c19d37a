"""What each node can host, as libvirt describes it: its guest architectures and hypervisors.

Read once per node and URI over the node's connection (a changed URI is a new node) and
kept in memory: they are facts about the hypervisor, read again after a restart, not
state. Reading happens outside any transaction (``describe``); placement, inside one,
only looks them up, so a node not yet described is simply not a candidate.
"""

import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from vws.clock import Clock
from vws.errors import VwsError
from vws.matching import Offer, Vmm
from vws.pool import designer
from vws.pool.driver import Driver
from vws.pool.nodes import ANY_NETWORK, Node

log = logging.getLogger(__name__)

RETRY_SECONDS = 30  # a node that did not answer is asked again after this long
# libvirt domain types -> the hypervisor names vws publishes.
_VMM_NAMES = {designer.TEST: "TEST", designer.QEMU: "QEMU", designer.KVM: "KVM"}


class NodeKinds:
    def __init__(
        self, wanted_type: str, describing: Callable[[str], AbstractContextManager[Driver]], clock: Clock
    ) -> None:
        self._wanted = wanted_type
        self._describing = describing  # a node's connection to read its facts from
        self._clock = clock
        self._known: dict[tuple[str, str], tuple[tuple[str, ...], tuple[Vmm, ...]]] = {}
        self._failed: dict[tuple[str, str], float] = {}  # when a node last did not answer (monotonic)
        self._guard = threading.Lock()

    def describe(self, nodes: Iterable[Node]) -> None:
        """Read the hypervisor of each active node not yet described; one that does not answer
        stays undescribed (and unplaceable), asked again after RETRY_SECONDS, not on every create."""
        for node in nodes:
            key = (node.name, node.uri)
            if not node.active or key in self._known or self._recently_failed(key):
                continue
            try:
                with self._describing(node.name) as driver:
                    facts = self._read(driver)
            except VwsError as exc:
                log.warning("node %s: cannot read what it hosts: %s", node.name, exc.description)
                with self._guard:
                    self._failed[key] = self._clock.monotonic()
                continue
            with self._guard:
                self._known[key] = facts
                self._failed.pop(key, None)

    def _recently_failed(self, key: tuple[str, str]) -> bool:
        with self._guard:
            failed = self._failed.get(key)
        return failed is not None and self._clock.monotonic() - failed < RETRY_SECONDS

    def offer(self, node: Node) -> Offer | None:
        """What ``node`` gives one workspace, if it has been described."""
        with self._guard:
            facts = self._known.get((node.name, node.uri))
        if facts is None:
            return None
        architectures, vmms = facts
        networks = frozenset(node.networks) if ANY_NETWORK not in node.networks else frozenset({ANY_NETWORK})
        return Offer(architectures, vmms, node.memory_mb, node.cpus, networks)

    def _read(self, driver: Driver) -> tuple[tuple[str, ...], tuple[Vmm, ...]]:
        version = driver.hypervisor_version()
        types = driver.virt_types()
        if designer.TEST not in types and self._wanted != designer.AUTO:
            types = frozenset({self._wanted})  # [pool] virt_type names the one type its guests get
        vmms = tuple(Vmm(_VMM_NAMES[kind], (version,)) for kind in sorted(types) if kind in _VMM_NAMES)
        return driver.architectures(), vmms
