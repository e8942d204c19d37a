"""PoolManager: the one object the workspace layer calls to reserve and drive machines.

Two kinds of call:

- **Reservation** (``place``, ``release_leases``, ``forget``, ``leases``) runs inside the
  caller's ``store.transaction()``: node capacity (the pool's ``pool_placements``), network
  leases and partition claims are taken in the same transaction that records the
  workspaces, all or none (``place`` runs in a savepoint, so a refusal undoes exactly
  what it did), and given back in the one that records them released or gone.
- **Execution** (``define`` ... ``remove``) runs outside any transaction and may be slow
  on real nodes. After each successful libvirt call the pool records the domain's XML
  and the power state it put it in (``pool_domains``): that record is how a test-driver
  node is rebuilt at restart (see ``testnode.py``) and how the pool knows a domain is not
  gone yet — ``release_leases`` refuses while it exists, so an address is never handed
  out twice after a failed destroy (Nimbus #101).

Where a domain's disks and files go follows its node's image mode (``nodes.Node.image_mode``):
``local.LocalFiles`` in the state dir, or ``volumes.UploadedFiles`` as storage volumes
over the node's connection. ``_files`` makes that one choice for define, unpropagate and
remove; eviction picks the matching cache.

Restart survival on test nodes: each ``test:///file`` node is opened from a copy of its
node file holding the recorded domains in their recorded states, so what libvirt runs
after SIGKILL + restart matches what it ran before.
"""

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from vws.clock import Clock, parse_timestamp
from vws.config import PoolConfig
from vws.errors import BackendError, InvalidMetadata, VwsError
from vws.matching import Offer, PoolOffer, check, kinds, runs
from vws.pool import calendar, context_drive, designer, downloads, network, nodes, placement, resizing, testnode
from vws.pool.calendar import Window
from vws.pool.connections import Connections
from vws.pool.designer import KernelFiles, NodeFacts
from vws.pool.domain_xml import DiskSpec
from vws.pool.driver import MISSING, PAUSED, RUNNING, SHUTOFF, DomainMissing, Driver, EventCallback, OwnedDomain
from vws.pool.machine import Allocation, MachineRequest, NetworkLease, Placement
from vws.pool.node_kinds import NodeKinds
from vws.pool.progress import Progress, ignore
from vws.pool.resizing import DEFINED, LIVE, NEXT_START, LiveResizeRefused, Resize
from vws.pool.settings import check_settings, network_pools_dir
from vws.pool.storage import claims, layers, volumes
from vws.pool.storage.eviction import Holds
from vws.pool.storage.files import DomainFiles
from vws.pool.storage.local import LocalFiles, NodeCache
from vws.pool.storage.prepare import PreparedDisks, prepare
from vws.pool.storage.repository import Repository, checksum
from vws.pool.virt_types import VirtTypes
from vws.store import rows
from vws.store.database import Store

log = logging.getLogger(__name__)

UNREACHABLE = "unreachable"  # domain_states() for domains on a node that cannot be reached
MAX_DESCRIPTOR_BYTES = 1 << 20  # an appliance descriptor is a few KB of XML
MAX_DESCRIPTORS = 1000  # the catalogue lists at most this many (one request never reads more)


def _defines_nothing(base: Path) -> None:
    """The ``take`` of callers that define no domain, so take no base."""


class PoolManager:
    def __init__(
        self,
        store: Store,
        config: PoolConfig,
        clock: Clock,
        state_dir: Path,
        on_event: EventCallback | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._dir = state_dir
        self._policy, self._bridges, self._prefix, self._legacy_vmm = check_settings(config)
        self._calendar = calendar.Calendar(clock, self._policy, frozenset(self._bridges))
        self._connections = Connections(store, clock, state_dir, on_event)
        self.virt_types = VirtTypes(config.virt_type, state_dir)
        self.kinds = NodeKinds(config.virt_type, self._connections.describing, clock)
        self._holds = Holds()
        self.repository = self._open_repository()
        self._load_network_pools()
        self._load_nodes()

    # ---- start-up ---------------------------------------------------------------------------

    def _open_repository(self) -> Repository:
        repository = Repository(
            self._config.image_repository or self._dir / "images",
            self._store,
            self._config.allowed_image_hosts,
            self._config.max_image_download_mb,
        )
        if self._config.image_repository is None:
            repository.write_sample()
        return repository

    def _load_network_pools(self) -> None:
        directory = network_pools_dir(self._config, self._dir)
        if self._config.network_pools_dir is None and not directory.exists():
            network.write_sample(directory)
        files = network.read_files(directory)
        with self._store.transaction() as db:
            network.sync_files(db, files, self._config.mac_prefix)
            self._associations = network.pool_names(db)

    def _load_nodes(self) -> None:
        with self._store.transaction() as db:
            if self._config.nodes_file is not None:
                nodes.sync_nodes_file(db, nodes.read_nodes_file(self._config.nodes_file))
            elif not nodes.list_nodes(db):
                uri = testnode.write_node(self._embedded_file(), nodes.EMBEDDED_MEMORY_MB, nodes.EMBEDDED_CPUS)
                nodes.add_node(
                    db, nodes.EMBEDDED, uri, nodes.EMBEDDED_MEMORY_MB, nodes.EMBEDDED_CPUS, origin="embedded"
                )
            embedded = [node for node in nodes.list_nodes(db) if node.origin == "embedded"]
        for node in embedded:  # its base file lives in the state dir: rewrite it if lost or older
            path = self._embedded_file()
            if not path.exists() or path.read_text() != testnode.node_xml(node.memory_mb, node.cpus):
                testnode.write_node(path, node.memory_mb, node.cpus)

    def _embedded_file(self) -> Path:
        return self._dir / "nodes" / nodes.EMBEDDED / "node.xml"

    # ---- reservation: inside the caller's transaction ---------------------------------------

    def place(
        self,
        db,
        workspace_ids: Sequence[int],
        machine: MachineRequest,
        *,
        allow_static: bool,
        window: Window | None = None,
    ) -> list[Placement]:
        """A node, domain name and leases for every workspace, or SchedulingFailed and nothing held.

        ``window``: when the workspaces hold their node's share (see ``calendar``); None, from now on.
        """
        if machine.memory_mb < 1 or machine.vcpus < 1:
            raise InvalidMetadata("memory and CPU count must be positive")
        claims.check_request(self.repository, machine)
        with db.atomic():  # a savepoint: a refusal undoes what place did, and only that
            demand = self._demand(db, machine)
            chosen = placement.place_group(self._calendar.loads(db, window), demand, len(workspace_ids), self._policy)
            placed = []
            for workspace_id, node in zip(workspace_ids, chosen, strict=True):
                claims.claim(db, self.repository, workspace_id, machine)
                leases = network.allocate(db, workspace_id, machine.nics, allow_static=allow_static)
                share = {"memory_mb": machine.memory_mb, "vcpus": machine.vcpus, **self._calendar.booked(window)}
                rows.insert(db, "pool_placements", {"workspace_id": workspace_id, "node": node, **share, "held": 1})
                placed.append(Placement(workspace_id, node, designer.domain_name(self._prefix, workspace_id), leases))
        return placed

    def check_room(self, db, machine: MachineRequest, count: int, window: Window | None = None) -> None:
        """Asked before reserving: InvalidMetadata or RequestDenied when no node can ever run
        ``machine`` (naming what is asked and what is offered), SchedulingFailed when the nodes
        that can have no room for ``count`` of it (over ``window``), saying when the earliest
        window of that length that they can hold begins."""
        check(placement.requirements(machine), list(self._offers(db).values()), self._legacy_vmm)
        self._calendar.check_room(db, self._demand(db, machine), count, window)

    def availability(self, machine: MachineRequest, window: Window, count: int) -> list[Window]:
        """Up to ``count`` windows like ``window`` that a node can hold ``machine`` for, earliest first."""
        self.describe_nodes()
        with self._store.reading() as db:
            return self._calendar.availability(db, self._demand(db, machine), window, count)

    def keep_reserved(self, db, workspace_id: int, machine: MachineRequest, window: Window) -> str:
        """The node an advance reservation will run on: its own, or another if that one is gone."""
        return self._calendar.keep_reserved(db, workspace_id, self._demand(db, machine), window)

    def set_end(self, db, workspace_id: int, end: datetime) -> None:
        """The workspace's lease ends at ``end`` now; SchedulingFailed if a reservation needs its node."""
        self._calendar.set_end(db, workspace_id, end)

    def describe_nodes(self) -> None:
        """Read what each active node hosts, where not known yet: before a transaction that places."""
        with self._store.reading() as db:
            self.kinds.describe(nodes.list_nodes(db))

    def offer(self) -> PoolOffer:
        """What the pool's active nodes can host, one entry per kind of node (the factory publishes it)."""
        self.describe_nodes()
        with self._store.reading() as db:
            return PoolOffer(tuple(kinds(self._offers(db).values())), self._legacy_vmm)

    def _offers(self, db) -> dict[str, Offer]:
        """Each active, described node's offer, by node name."""
        offers = {node.name: self.kinds.offer(node) for node in nodes.list_nodes(db) if node.active}
        return {name: offer for name, offer in offers.items() if offer is not None}

    def _demand(self, db, machine: MachineRequest) -> placement.Demand:
        """What one workspace of ``machine`` asks of a node, on the nodes of a kind that runs it only."""
        wanted = placement.requirements(machine)
        kind = frozenset(name for name, offer in self._offers(db).items() if runs(wanted, offer, self._legacy_vmm))
        return dataclasses.replace(placement.demand(machine), nodes=kind)

    def release_leases(self, db, workspace_id: int) -> None:
        """Free the workspace's addresses and partitions; refused while its domain is not gone."""
        if db.execute("select 1 from pool_domains where workspace_id = ?", [workspace_id]).fetchone():
            raise BackendError(f"workspace {workspace_id}'s domain has not been removed; its leases stay held")
        network.release(db, workspace_id)
        claims.release_claims(db, workspace_id)
        db.execute("update pool_placements set held = 0 where workspace_id = ?", [workspace_id])

    def forget(self, db, workspace_id: int) -> None:
        """The workspace is gone: give back what it held, and the node no longer counts it."""
        self.release_leases(db, workspace_id)
        db.execute("delete from pool_placements where workspace_id = ?", [workspace_id])
        db.execute("delete from pool_resizes where workspace_id = ?", [workspace_id])

    def leases(self, db, workspace_ids: list[int]) -> dict[int, tuple[NetworkLease, ...]]:
        """Each workspace's leases (none for one that holds none)."""
        return network.leases_of_many(db, workspace_ids)

    # ---- renegotiation: the books inside the caller's transaction, then libvirt -------------

    def reserve_resize(self, db, workspace_id: int, old: Allocation, new: Allocation, live: bool) -> Resize:
        """The node holds max(old, new) from now on, or SchedulingFailed: see ``resizing``."""

        def loads(ends_at: str | None) -> list[placement.NodeLoad]:  # over what is left of its lease
            now = self._clock.now()
            return self._calendar.loads(
                db, None if ends_at is None else Window(now, max(now, parse_timestamp(ends_at)))
            )

        return resizing.reserve(db, workspace_id, old, new, live, loads)

    def settle_resize(self, db, workspace_id: int, kept: Allocation, *, deferred: bool = False) -> None:
        resizing.settle(db, workspace_id, kept, deferred=deferred)

    def pending_resizes(self) -> list[Resize]:
        with self._store.reading() as db:
            return resizing.pending(db)

    def resize(self, resize: Resize, *, at_next_start: bool = False) -> str:
        """Give the domain ``resize.new``: live and in its definition while it runs (``LIVE``), or in
        its definition only when it is off (``DEFINED``) or, with ``at_next_start``, when libvirt
        cannot apply it live (``NEXT_START``). Otherwise LiveResizeRefused, with nothing changed."""
        driver = self._driver(resize.node)
        with self._store.reading() as db:
            macs = {lease.nic: lease.mac for lease in network.leases_of(db, resize.workspace_id)}
        outcome = DEFINED
        if driver.state(resize.domain) in (RUNNING, PAUSED):
            try:
                resizing.apply_live(driver, resize, macs)
                outcome = LIVE
            except BackendError:
                if not at_next_start:
                    raise
                outcome = NEXT_START
        self._redefine(driver, resize.workspace_id, resize.domain, resize.new, macs)
        return outcome

    def _redefine(self, driver: Driver, workspace_id: int, domain: str, allocation: Allocation, macs) -> None:
        headroom = self._config.live_headroom_percent
        xml = resizing.resized_xml(driver.persistent_xml(domain), allocation, macs, headroom)
        driver.define(xml)
        with self._store.transaction() as db:
            db.execute("update pool_domains set xml = ? where workspace_id = ?", [xml, workspace_id])

    # ---- what operators see ------------------------------------------------------------------

    def loads(self) -> list[placement.NodeLoad]:
        """Each node's memory and CPUs, given out and free."""
        with self._store.reading() as db:
            return nodes.loads(db)

    def lease_counts(self) -> dict[str, tuple[int, int]]:
        """Per network pool: addresses leased and free."""
        with self._store.reading() as db:
            return network.counts(db)

    # ---- execution: outside any transaction -------------------------------------------------

    def define(self, placement: Placement, machine: MachineRequest, progress: Progress = ignore) -> None:
        """Disks, context drive and the domain definition; on failure its own files are removed.

        ``progress`` hears how far a copy of a missing base image got; raising from it
        abandons the define, which then cleans up like any other failure.
        """
        with self._holds.define(placement.node) as take:  # its bases stay until its domain records them
            self._define(placement, machine, progress, take)

    def _define(
        self, placement: Placement, machine: MachineRequest, progress: Progress, take: Callable[[Path], None]
    ) -> None:
        driver = self._driver(placement.node)
        files = self._files(placement.node, placement.domain, driver, take)
        files.discard()  # leftovers of an attempt cut off by a crash
        directory = self._domain_dir(placement.node, placement.domain)
        directory.mkdir(parents=True)
        try:
            prepared = prepare(self.repository, files, machine, progress)
            kernel = self._kernel(machine, files, progress)
            disks = prepared.disks + self._context_disk(placement, machine, prepared, directory, driver, files)
            spec = designer.design(
                machine,
                placement,
                NodeFacts(
                    placement.node,
                    self.virt_types.of(placement.node, driver, files, progress),
                    self._bridges,
                    driver.architectures(),
                ),
                disks,
                wanted_type=self._config.virt_type,
                kernel=kernel,
                console_log=files.console_log(),
                headroom_percent=self._config.live_headroom_percent,
            )
            xml = spec.to_xml()
            driver.define(xml)
            # Kernel and initrd are cached bases too on upload nodes: kept out of eviction alike.
            boot = () if kernel is None else tuple(path for path in (kernel.kernel, kernel.initrd) if path)
            self._record(placement, xml, directory, prepared.bases + boot, driver)
        except OSError as exc:
            files.discard()
            raise BackendError(f"{placement.node}: preparing {placement.domain} failed: {exc}") from None
        except BaseException:  # refused, cancelled or interrupted: nothing of it stays
            files.discard()
            raise

    def start(self, node: str, domain: str) -> None:
        self._driver(node).start(domain)
        self._set_state(node, domain, RUNNING)
        with self._store.transaction() as db:
            resizing.started(db, node, domain)  # a renegotiation deferred to this start is in effect

    def shutdown(self, node: str, domain: str) -> None:
        """Graceful power-off, destroyed after ``shutdown_wait_seconds`` if the guest ignores it."""
        self._driver(node).shutdown(domain, self._config.shutdown_wait_seconds)
        self._set_state(node, domain, SHUTOFF)

    def suspend(self, node: str, domain: str) -> None:
        self._driver(node).suspend(domain)
        self._set_state(node, domain, PAUSED)

    def resume(self, node: str, domain: str) -> None:
        self._driver(node).resume(domain)
        self._set_state(node, domain, RUNNING)

    def reboot(self, node: str, domain: str) -> None:
        self._driver(node).reboot(domain)
        self._set_state(node, domain, RUNNING)

    def unpropagate(self, node: str, domain: str, target: str | None) -> str:
        """Save the root overlay (base + the guest's writes) as a new repository image; its URI."""
        files = self._files(node, domain, self._driver(node))
        return files.save_root(self.repository, _save_target(domain, target))

    def descriptor(self, location: str) -> bytes | None:
        """The bytes of the repository file at ``location`` when it may be an appliance descriptor
        (a small XML file; an image never starts with ``<``); None for an image or a download."""
        if downloads.is_remote(location):
            return None
        path = self.repository.resolve(location)
        if path.stat().st_size > MAX_DESCRIPTOR_BYTES:
            return None
        data = path.read_bytes()
        return data if data.lstrip()[:1] == b"<" else None

    def descriptors(self) -> list[tuple[str, bytes]]:
        """(location, bytes) of every file at the top of the repository that may be a descriptor
        (``*.xml``), at most MAX_DESCRIPTORS of them."""
        found = sorted(self.repository.root.glob("*.xml"))[:MAX_DESCRIPTORS]
        located = ((self.repository.uri(path), self.descriptor(self.repository.uri(path))) for path in found)
        return [(location, data) for location, data in located if data is not None]

    def layer_digests(self, location: str) -> tuple[str, ...]:
        """The sha256 of each layer of the repository image at ``location``, bottom first."""
        chain = layers.chain(self.repository.root, self.repository.resolve(location))
        return tuple(checksum(self._store, layer.path) for layer in chain)

    def check_save_target(self, domain: str, target: str | None) -> None:
        """Refuse, before any work, a save-as target that is not allowed or already taken."""
        self.repository.check_new(_save_target(domain, target))

    def remove(self, node: str, domain: str) -> None:
        """Destroy, undefine, delete the workspace's files; a domain already gone is fine."""
        driver = self._driver(node)
        try:
            driver.destroy(domain)
            driver.undefine(domain)
        except DomainMissing:
            pass
        self._files(node, domain, driver).discard()
        with self._store.transaction() as db:
            db.execute("delete from pool_domains where node = ? and domain = ?", [node, domain])

    def node_names(self) -> list[str]:
        with self._store.reading() as db:
            return [node.name for node in nodes.list_nodes(db)]

    def domain_states(self, only: str | None = None) -> dict[tuple[str, str], str]:
        """What libvirt runs that vws owns, per (node, domain), on every node or ``only`` that one;
        nodes that cannot be reached report their recorded domains as ``unreachable`` and are
        marked unavailable."""
        states: dict[tuple[str, str], str] = {}
        with self._store.reading() as db:
            chosen = [node for node in nodes.list_nodes(db) if only is None or node.name == only]
        for node in chosen:
            try:
                owned = self._owned(self._connections.healthy(node.name))
            except VwsError as exc:
                log.warning("node %s unreachable: %s", node.name, exc.description)
                self._set_available(node.name, False)
                states.update({(node.name, name): UNREACHABLE for name in self._recorded_names(node.name)})
                continue
            self._set_available(node.name, True)
            states.update({(node.name, name): domain.state for name, domain in owned.items()})
        return states

    def domain_state(self, node: str, domain: str) -> str:
        """What libvirt reports for one domain now (running, paused, shutoff, crashed, missing),
        or ``unreachable`` when its node does not answer."""
        try:
            return self._connections.healthy(node).state(domain)
        except VwsError:
            return UNREACHABLE

    def _owned(self, driver: Driver) -> dict[str, OwnedDomain]:
        """The node's vws domains that are this service's: named as it names that workspace.

        Another service on the same libvirtd marks its domains alike; its prefix differs.
        """
        return {
            name: domain
            for name, domain in driver.owned().items()
            if name == designer.domain_name(self._prefix, domain.workspace_id)
        }

    @property
    def removes_unclaimed(self) -> bool:
        return self._config.remove_unclaimed_domains

    def associations(self) -> list[str]:
        """Network pool names, published as the factory's ``Associations`` property."""
        return list(self._associations)

    def close(self) -> None:
        self._connections.close()

    def _driver(self, name: str) -> Driver:
        return self._connections.driver(name)

    # ---- files and records ------------------------------------------------------------------

    def _domain_dir(self, node: str, domain: str) -> Path:
        return self._dir / "nodes" / node / "domains" / domain

    def _cache(self, node: str, take: Callable[[Path], None]) -> NodeCache:
        keep = functools.partial(self._kept, node)
        directory = self._dir / "nodes" / node / "cache"
        return NodeCache(directory, self._config.image_cache_mb, keep, take, name=f"node {node}")

    def _uploads(self, node: str) -> bool:
        with self._store.reading() as db:
            return nodes.get_node(db, node).image_mode == nodes.UPLOAD

    def _files(
        self, node: str, domain: str, driver: Driver, take: Callable[[Path], None] = _defines_nothing
    ) -> DomainFiles:
        """Where the domain's disks and files go: the state dir, or volumes on an upload node."""
        directory = self._domain_dir(node, domain)
        if self._uploads(node):
            return volumes.UploadedFiles(
                self._volumes(driver, take), self._store, domain, directory, self.repository.root
            )
        return LocalFiles(self._store, self._cache(node, take), directory, self.repository.root)

    def _volumes(self, driver: Driver, take: Callable[[Path], None] = _defines_nothing) -> volumes.NodeVolumes:
        keep = functools.partial(self._kept, driver.node)
        return volumes.NodeVolumes(driver, self._store, self._clock, self._config, keep, take)

    def _kernel(self, machine: MachineRequest, files: DomainFiles, progress: Progress) -> KernelFiles | None:
        if machine.kernel is None or machine.kernel.image is None:
            return None

        def boot_file(location: str) -> Path:  # an http(s) one is downloaded first, reported alike
            return files.boot_file(self.repository.resolve(location, progress), progress)

        initrd = machine.kernel.initrd
        return KernelFiles(
            boot_file(machine.kernel.image), None if initrd is None else boot_file(initrd), machine.kernel.parameters
        )

    def _context_disk(
        self,
        placement: Placement,
        machine: MachineRequest,
        prepared: PreparedDisks,
        directory: Path,
        driver: Driver,
        files: DomainFiles,
    ) -> tuple[DiskSpec, ...]:
        if not context_drive.needed(machine):
            return ()
        if designer.TEST in driver.virt_types() and not self._config.test_node_context_iso:
            return ()  # see context_drive: building it costs more than the rest of a test-node define
        layout = context_drive.layout(machine, placement.leases, prepared.mounts, placement.domain)
        context_drive.write_layout(directory / "context", layout)
        iso = directory / "context.iso"
        context_drive.build_iso(directory / "context", iso)
        return (DiskSpec(files.attach(iso), designer.disk_target(len(prepared.disks)), "raw", readonly=True),)

    def _record(self, placement: Placement, xml: str, directory: Path, bases: Sequence[Path], driver: Driver) -> None:
        try:
            with self._store.transaction() as db:
                db.execute(
                    "insert or replace into pool_domains (node, domain, workspace_id, xml, state, directory, bases) "
                    "values (?, ?, ?, ?, ?, ?, ?)",
                    [
                        placement.node,
                        placement.domain,
                        placement.workspace_id,
                        xml,
                        SHUTOFF,
                        str(directory),
                        json.dumps([str(base) for base in bases]),
                    ],
                )
        except Exception:
            driver.undefine(placement.domain)  # not recorded: not left defined either
            raise

    def _set_state(self, node: str, domain: str, state: str) -> None:
        with self._store.transaction() as db:
            db.execute("update pool_domains set state = ? where node = ? and domain = ?", [state, node, domain])

    def _set_available(self, node: str, available: bool) -> None:
        with self._store.transaction() as db:
            db.execute(
                "update nodes set available = ? where name = ? and available != ?",
                [int(available), node, int(available)],
            )

    def _recorded_names(self, node: str) -> list[str]:
        with self._store.reading() as db:
            return [row[0] for row in db.execute("select domain from pool_domains where node = ?", [node])]

    def _kept(self, node: str) -> set[Path]:
        """The node's cached bases that must stay: defined domains and defines in progress read them."""
        with self._store.reading() as db:
            recorded = {
                Path(base)
                for (bases,) in db.execute("select bases from pool_domains where node = ?", [node])
                for base in json.loads(bases or "[]")
            }
        return recorded | self._holds.of(node)


def _save_target(domain: str, target: str | None) -> str:
    """Where shutdown-save puts the root: the PostShutdown target, or one named for the domain."""
    return target or f"file://{domain}.qcow2"


__all__ = ["DEFINED", "LIVE", "MISSING", "NEXT_START", "UNREACHABLE", "LiveResizeRefused", "PoolManager", "Resize"]
