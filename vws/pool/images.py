"""Images: the repository, per-node caches keyed by content, and per-workspace disks.

- **Repository** (``PoolConfig.image_repository``, default ``<state>/images`` with a sample
  ``ttylinux-xen``): ``file://name`` is relative to it; ``file:///abs/path`` must lie
  inside it (a user may not attach arbitrary files of the service host);
  ``http(s)://host/path[#sha256=<hex>]`` only for hosts in ``allowed_image_hosts``, streamed
  once into ``<repository>/.downloads`` under ``max_image_download_mb`` and reused after (no
  revalidation; see ``downloads.py`` for the cap and the pin).
- **Checksums**: sha256 of a repository file, stored in ``image_checksums`` and reused
  while its (size, mtime) hold, so a large base is hashed once, not per workspace; a
  download's is the one computed as it streamed in, so it is never hashed again.
- **Node cache**: ``<node dir>/cache/<sha256>``, copied once per node (holes kept), named
  by content so a changed image never hides behind a stale copy. That is for local nodes
  (``nodes.LOCAL``: test, ``qemu:///system``), which read the state dir; upload nodes keep
  the same cache as storage volumes (``volumes.py``); ``cached_base`` fills both alike, under
  one lock per base (``base_lock``) that eviction takes too. With ``image_cache_mb`` set, room is
  made before a new base is copied in (``room_for``, the one rule for both kinds of node):
  least recently used bases go that no defined domain reads through (``pool_domains``) and
  no define in progress has taken (``Holds``); a base that cannot fit even then is refused
  (``CacheFull``) before anything is evicted or copied. A define waiting for another's
  download, copy or room-making (``acquire``) keeps calling its progress, so a destroy or a
  stop need not wait for the other's work to end.
- **Per-workspace disks** (``prepare``, the same for both kinds of node through
  ``DomainFiles``): a writable root is a qcow2 overlay over the cached base; a read-only
  root or partition is the cached base itself, attached read-only and shareable; a
  read-write partition is the repository file itself, written in place, so only one live
  workspace may hold it (``claim`` refuses a second); blank partitions are sparse raw.
  ``LocalFiles`` makes them as files in the domain's directory (an overlay written by
  ``qcow2.write_overlay``: constant cost whatever the base size).
"""

import hashlib
import logging
import os
import shutil
import subprocess
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlite_utils import Database

from vws.errors import BackendError, InvalidMetadata, RequestDenied
from vws.pool import downloads, qcow2
from vws.pool.designer import disk_target
from vws.pool.domain_xml import DiskSpec
from vws.pool.machine import MachineRequest
from vws.pool.progress import STEP, Progress, ignore
from vws.store.database import Store
from vws.store.rows import one, select

log = logging.getLogger(__name__)

SAMPLE_IMAGE = "ttylinux-xen"
SAMPLE_SIZE = 64 * 1024 * 1024
# A domain's own files, named alike in its directory and (prefixed) as volumes.
ROOT_OVERLAY = "root.qcow2"
CONSOLE_LOG = "console.log"


class Repository:
    def __init__(self, root: Path, store: Store, allowed_hosts: Iterable[str] = (), max_download_mb: int = 0) -> None:
        self.root = root.resolve()
        self.store = store  # for checksums: a pin is checked against the one recorded at download
        self.allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
        self.max_download_bytes = max_download_mb << 20

    def key(self, location: str) -> str:
        """What two requests for the same image have in common: a path, or the URL (no pin)."""
        if downloads.is_remote(location):
            return self._remote(location).url
        return str(self._local(location))

    def check(self, location: str) -> None:
        """Refuse now what ``resolve`` would refuse later: a file that is not there, a host not
        allowed, a location outside the repository (a download itself is left for later)."""
        if not downloads.is_remote(location) and not self._local(location).is_file():
            raise InvalidMetadata(f"image {location} not found in the repository")
        self.key(location)

    def resolve(self, location: str, progress: Progress = ignore) -> Path:
        """A local file holding the image; http(s) images are downloaded once, reporting progress."""
        path = self._download(location, progress) if downloads.is_remote(location) else self._local(location)
        if not path.is_file():
            raise InvalidMetadata(f"image {location} not found in the repository")
        return path

    def uri(self, path: Path) -> str:
        return "file://" + path.relative_to(self.root).as_posix()

    def save(self, source: Path, target: str) -> str:
        """Flatten ``source`` (an overlay) into a standalone qcow2 at ``target``; returns its URI."""
        return self.receive(
            target, lambda partial: _run(["qemu-img", "convert", "-q", "-O", "qcow2", str(source), str(partial)])
        )

    def check_new(self, target: str) -> Path:
        """Where a new image at ``target`` goes; refused when outside the repository or taken."""
        path = self._local(target)
        if path.exists():
            raise RequestDenied(f"image {target} already exists in the repository")
        return path

    def receive(self, target: str, write: Callable[[Path], None]) -> str:
        """A new image at ``target``, which ``write`` fills under a partial name first; its URI."""
        path = self.check_new(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            write(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
        return self.uri(path)

    def write_sample(self) -> None:
        """The embedded default's ``ttylinux-xen``: a sparse raw disk, enough for the test driver."""
        self.root.mkdir(parents=True, exist_ok=True)
        sample = self.root / SAMPLE_IMAGE
        if not sample.exists():
            with open(sample, "wb") as file:
                file.truncate(SAMPLE_SIZE)

    def _local(self, location: str) -> Path:
        parts = urllib.parse.urlsplit(location)
        if parts.scheme not in ("file", ""):
            raise RequestDenied(f"image location {location}: only file:// and allowed http(s):// are supported")
        if parts.scheme == "file" and parts.netloc:  # file://name: relative to the repository
            relative = parts.netloc + parts.path
            path = self.root / urllib.parse.unquote(relative)
        else:
            raw = urllib.parse.unquote(parts.path)
            path = Path(raw) if raw.startswith("/") else self.root / raw
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise RequestDenied(f"image {location} is outside the image repository")
        return resolved

    def _remote(self, location: str) -> downloads.Remote:
        remote = downloads.parse(location)
        downloads.check_host(remote.url, self.allowed_hosts)
        return remote

    def _download(self, location: str, progress: Progress) -> Path:
        remote = self._remote(location)
        path = self.root / ".downloads" / hashlib.sha256(remote.url.encode()).hexdigest()[:32]
        with acquire(keyed_lock(path), progress):  # one download per file at a time
            if not (path.exists() and remote.sha256 in (None, checksum(self.store, path))):
                path.parent.mkdir(parents=True, exist_ok=True)
                digest = downloads.fetch(
                    remote,
                    path,
                    allowed_hosts=self.allowed_hosts,
                    limit_bytes=self.max_download_bytes,
                    progress=progress,
                )
                record_checksum(self.store, path, digest)
        return path


# ---- checksums and the node cache -------------------------------------------------------


def checksum(store: Store, path: Path) -> str:
    """sha256 of ``path``, hashed only when its size or mtime changed since last time."""
    stat = path.stat()
    with store.reading() as db:
        known = one(db, "select * from image_checksums where path = ?", [str(path)])
    if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
        return known["sha256"]
    digest = downloads.sha256_file(path)  # outside the store lock: a large image takes seconds
    record_checksum(store, path, digest, stat)
    return digest


def record_checksum(store: Store, path: Path, digest: str, stat: os.stat_result | None = None) -> None:
    """``digest`` is the sha256 of ``path`` while its size and mtime stay as ``stat`` (default: now) has them."""
    stat = stat or path.stat()
    with store.transaction() as db:
        db["image_checksums"].upsert(
            {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}, pk="path"
        )


class NodeCache:
    """Base images copied to one local node, named by their sha256, under ``image_cache_mb``:
    a ``BaseCache`` of files in ``directory``, least recently used the oldest mtime.

    ``keep`` says which bases must stay (see ``room_for``); ``take`` hears of every base
    handed out, which the define asking for it then reads through.
    """

    def __init__(
        self,
        directory: Path,
        limit_mb: int = 0,
        keep: Callable[[], set[Path]] = set,
        take: Callable[[Path], None] = lambda base: None,
        name: str = "",
    ) -> None:
        self.directory = directory
        self.name = name or str(directory)
        self.limit_bytes = limit_mb << 20
        self.keep = keep
        self.take = take

    def base(self, source: Path, digest: str, progress: Progress = ignore) -> Path:
        return cached_base(self, source, digest, progress)

    def present(self, digest: str) -> Path | None:
        cached = self.directory / digest
        return cached if cached.exists() else None  # a copy is renamed into place only once complete

    def touch(self, base: Path) -> None:
        os.utime(base)

    def fill(self, source: Path, digest: str, progress: Progress) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        cached = self.directory / digest
        partial = self.directory / f".{digest}.partial.{os.getpid()}"
        try:
            copy_sparse(source, partial, progress)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, cached)
        return cached

    def bases(self) -> list[tuple[Path, int]]:
        """(base, bytes allocated), least recently used first."""
        if not self.directory.exists():
            return []
        found = (path for path in self.directory.iterdir() if not path.name.startswith("."))
        return [(path, allocated(path)) for path in sorted(found, key=lambda path: path.stat().st_mtime_ns)]

    def delete(self, base: Path) -> None:
        base.unlink(missing_ok=True)


class BaseCache(Protocol):
    """A node's cache of base images (``NodeCache``, ``volumes.NodeVolumes``), as ``cached_base``
    and ``room_for`` use it. A base is named by its sha256: ``base.name`` is its digest."""

    name: str  # the node's name: for the locks that order work on its cache, and for messages
    limit_bytes: int  # 0: no limit
    keep: Callable[[], set[Path]]  # bases that must stay: defined domains or defines in progress use them
    take: Callable[[Path], None]  # hears of every base handed out (``Holds.define``)

    def present(self, digest: str) -> Path | None:
        """The complete base of ``digest``, if the cache has one (what is left of an incomplete copy is deleted)."""
        ...

    def touch(self, base: Path) -> None:
        """``base`` was just used: evicted last."""
        ...

    def fill(self, source: Path, digest: str, progress: Progress) -> Path:
        """Copy ``source`` in as the base of ``digest``, reporting progress; a failed copy leaves nothing."""
        ...

    def bases(self) -> list[tuple[Path, int]]:
        """(base, bytes allocated), least recently used first."""
        ...

    def delete(self, base: Path) -> None: ...


def cached_base(cache: BaseCache, source: Path, digest: str, progress: Progress = ignore) -> Path:
    """The cache's base holding ``source`` (sha256 ``digest``), copied in if it has none, after
    room was made; two defines needing one base copy it once, the second waiting (``acquire``)."""
    with acquire(base_lock(cache, digest), progress):
        base = cache.present(digest)
        if base is not None:
            cache.touch(base)
        else:
            with room_for(cache, allocated(source), source.stat().st_size, progress):
                base = cache.fill(source, digest, progress)
        cache.take(base)
    return base


def base_lock(cache: BaseCache, digest: str) -> threading.Lock:
    """The lock held while the base of ``digest`` is copied in, handed out or evicted."""
    return keyed_lock((cache.name, "base", digest))


class CacheFull(BackendError):
    """A new base does not fit under ``image_cache_mb`` even with every base nobody uses gone."""


@contextmanager
def room_for(cache: BaseCache, need: int, size: int, progress: Progress) -> Iterator[None]:
    """Around copying a new base of ``need`` bytes (``size`` in all) into ``cache``: with a limit,
    one copy into it at a time, after least recently used bases that nobody keeps made room."""
    if not cache.limit_bytes:
        yield
        return
    with acquire(keyed_lock((cache.name, "room")), progress, size):
        _make_room(cache, need, progress)
        yield


def _make_room(cache: BaseCache, need: int, progress: Progress) -> None:
    bases, keep = cache.bases(), cache.keep()
    victims = to_evict(bases, keep, cache.limit_bytes, need)
    if victims is None:
        limit = f"the {_mb(cache.limit_bytes)} MB image cache of {cache.name} ([pool] image_cache_mb)"
        if need > cache.limit_bytes:
            raise CacheFull(f"a {_mb(need)} MB image is larger than {limit}")
        kept = sum(size for base, size in bases if base in keep)
        raise CacheFull(
            f"a {_mb(need)} MB image does not fit in {limit}: {_mb(kept)} MB of it hold images live workspaces use"
        )
    for base in victims:
        with acquire(base_lock(cache, base.name), progress):
            if base not in cache.keep():  # a define took it since the list was made: it stays
                cache.delete(base)
                log.info("evicted cached image %s from %s", base.name, cache.name)


def to_evict(bases: Sequence[tuple[Path, int]], keep: set[Path], limit_bytes: int, need: int) -> list[Path] | None:
    """Which of ``bases`` (base, bytes; least recently used first) to evict so that ``need`` more
    bytes fit under the limit, never one in ``keep``; None when even evicting all others would not do."""
    total = sum(size for _, size in bases)
    evicted = []
    for base, size in bases:
        if total + need <= limit_bytes:
            break
        if base not in keep:
            total -= size
            evicted.append(base)
    return evicted if total + need <= limit_bytes else None


class Holds:
    """Bases the defines in progress took from node caches: kept until each define is over.

    A define records the bases its domain reads through (``pool_domains.bases``) only at its
    end; until then its holds keep another define's room-making from evicting them.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: Counter[tuple[str, Path]] = Counter()

    def of(self, node: str) -> set[Path]:
        with self._guard:
            return {base for held_node, base in self._held if held_node == node}

    @contextmanager
    def define(self, node: str) -> Iterator[Callable[[Path], None]]:
        """For one define on ``node``: the ``take`` its caches call; all it took is let go after."""
        taken: list[Path] = []

        def take(base: Path) -> None:
            with self._guard:
                self._held[(node, base)] += 1
            taken.append(base)

        try:
            yield take
        finally:
            with self._guard:
                self._held -= Counter((node, base) for base in taken)


def _mb(size: int) -> int:
    return -(-size // (1 << 20))


_locks: dict[Hashable, threading.Lock] = {}
_locks_guard = threading.Lock()


def keyed_lock(key: Hashable) -> threading.Lock:
    """The one lock for ``key``: work on one thing (a download, a base's copy to a node) runs once at a time."""
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


@contextmanager
def acquire(lock: threading.Lock, progress: Progress, size: int = 0) -> Iterator[None]:
    """Hold ``lock``, which another define may hold for as long as a whole download or copy
    takes: while waiting, ``progress(0, size)`` every half second gives a destroy or a
    stop waiting on this define its chance to raise, as the work itself would."""
    while not lock.acquire(timeout=_WAIT_STEP):
        progress(0, size)
    try:
        yield
    finally:
        lock.release()


_WAIT_STEP = 0.5  # seconds


def allocated(path: Path) -> int:
    """Bytes a file takes on disk (holes take none)."""
    return path.stat().st_blocks * 512


def copy_sparse(source: Path, target: Path, progress: Progress = ignore) -> None:
    """Copy only the data extents (SEEK_DATA/SEEK_HOLE); holes stay holes.

    Progress counts file offsets, so skipping a hole advances it as copying data does.
    """
    size = source.stat().st_size
    with open(source, "rb") as src, open(target, "wb") as dst:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            _copy_range(src.fileno(), dst.fileno(), start, end - start, lambda done: progress(done, size))
            offset = end
        dst.truncate(size)
    progress(size, size)


def _copy_range(src: int, dst: int, offset: int, length: int, reached: Callable[[int], None]) -> None:
    while length > 0:
        copied = os.copy_file_range(src, dst, min(length, STEP), offset, offset)
        if copied == 0:
            raise OSError(f"short copy at offset {offset}")
        offset += copied
        length -= copied
        reached(offset)


# ---- claims -------------------------------------------------------------------------------


def check_request(repository: Repository, machine: MachineRequest) -> None:
    """Everything about a request's disks that can be refused before it is accepted."""
    disks = ([machine.root] if machine.root else []) + list(machine.partitions)
    kernel = [machine.kernel.image, machine.kernel.initrd] if machine.kernel else []
    for location in [disk.location for disk in disks] + [location for location in kernel if location]:
        repository.check(location)
    for blank in machine.blank_disks:
        blank_name(blank.partition_name)


def claim(db: Database, repository: Repository, workspace_id: int, machine: MachineRequest) -> None:
    """Hold the request's partitions for the workspace: read-write ones exclusively."""
    for disk in machine.partitions:
        path = repository.key(disk.location)
        holders = select(db, "select * from image_claims where path = ? and workspace_id != ?", [path, workspace_id])
        if disk.writable and holders:
            raise RequestDenied(
                f"partition {disk.location} is in use by another workspace; read-write partitions cannot be shared"
            )
        if any(holder["writable"] for holder in holders):
            raise RequestDenied(f"partition {disk.location} is attached read-write to another workspace")
        db.execute(
            "insert or replace into image_claims (workspace_id, path, writable) values (?, ?, ?)",
            [workspace_id, path, int(disk.writable)],
        )


def release_claims(db: Database, workspace_id: int) -> None:
    db.execute("delete from image_claims where workspace_id = ?", [workspace_id])


# ---- per-workspace disks ----------------------------------------------------------------


class DomainFiles(Protocol):
    """Where one domain's disks and files go on its node; every path returned is as the node sees it.

    ``LocalFiles`` here (state-dir files the node reads), ``volumes.UploadedFiles`` (storage
    volumes on the node). Each new file is the domain's own, and ``discard`` deletes them
    all; ``base`` copies are shared by content and stay.
    """

    def base(self, source: Path, progress: Progress) -> Path:
        """The node's cached copy of repository image ``source``, made if missing."""
        ...

    def overlay(self, base: Path, base_format: str, size: int) -> Path:
        """A new empty qcow2 root of ``size`` bytes over ``base``."""
        ...

    def blank(self, name: str, size: int) -> Path:
        """A new sparse raw disk for blank partition ``name``."""
        ...

    def in_place(self, source: Path) -> Path:
        """Repository file ``source`` itself, for a read-write partition."""
        ...

    def boot_file(self, source: Path, progress: Progress) -> Path:
        """Repository kernel or initrd ``source``."""
        ...

    def attach(self, local: Path) -> Path:
        """A file made for the domain in its local directory (the context drive)."""
        ...

    def console_log(self) -> Path:
        """Where the domain's serial console is written."""
        ...

    def save_root(self, repository: Repository, target: str) -> str:
        """The root overlay, flattened, as a new repository image at ``target``; its URI."""
        ...

    def discard(self) -> None:
        """Delete the domain's own files; any that are missing are fine."""
        ...


@dataclass(frozen=True)
class LocalFiles:
    """A local node's files: bases in its cache, the domain's own in ``directory``."""

    store: Store
    cache: NodeCache
    directory: Path

    def base(self, source: Path, progress: Progress) -> Path:
        return self.cache.base(source, checksum(self.store, source), progress)

    def overlay(self, base: Path, base_format: str, size: int) -> Path:
        path = self.directory / ROOT_OVERLAY
        qcow2.write_overlay(path, base, base_format, size)
        return path

    def blank(self, name: str, size: int) -> Path:
        path = self.directory / blank_name(name)
        with open(path, "xb") as file:
            file.truncate(size)
        return path

    def in_place(self, source: Path) -> Path:
        return source

    def boot_file(self, source: Path, progress: Progress) -> Path:
        return source

    def attach(self, local: Path) -> Path:
        return local

    def console_log(self) -> Path:
        return self.directory / CONSOLE_LOG

    def save_root(self, repository: Repository, target: str) -> str:
        overlay = self.directory / ROOT_OVERLAY
        if not overlay.exists():
            raise BackendError(f"{self.directory.name} has no writable root disk to save")
        return repository.save(overlay, target)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class PreparedDisks:
    disks: tuple[DiskSpec, ...]
    bases: tuple[Path, ...]  # cached bases the disks read through (kept out of eviction)
    mounts: tuple[tuple[str, str], ...]  # (mountAs from the metadata, guest device)


def prepare(
    repository: Repository, files: DomainFiles, machine: MachineRequest, progress: Progress = ignore
) -> PreparedDisks:
    """Make the workspace's disks through ``files``; the caller discards them on failure.

    Formats and sizes are read from the repository file, which the cached copy equals.
    """
    disks: list[DiskSpec] = []
    bases: list[Path] = []
    mounts: list[tuple[str, str]] = []

    def add(spec: DiskSpec, mount_as: str) -> None:
        disks.append(spec)
        mounts.append((mount_as, spec.target))

    def cached(location: str) -> tuple[Path, DiskSpec]:
        """The repository file and its cached copy, attached read-only and shareable."""
        source = repository.resolve(location, progress)
        base = files.base(source, progress)
        bases.append(base)
        fmt = qcow2.detect_format(source)
        return source, DiskSpec(base, disk_target(len(disks)), fmt, readonly=True, shareable=True)

    if machine.root is not None:
        source, spec = cached(machine.root.location)
        if machine.root.writable:
            overlay = files.overlay(spec.path, spec.format, qcow2.virtual_size(source))
            spec = DiskSpec(overlay, spec.target, "qcow2")
        add(spec, machine.root.mount_as)
    for partition in machine.partitions:
        if partition.writable:
            path = files.in_place(repository.resolve(partition.location, progress))
            add(DiskSpec(path, disk_target(len(disks)), qcow2.detect_format(path)), partition.mount_as)
        else:
            add(cached(partition.location)[1], partition.mount_as)
    for blank in machine.blank_disks:
        path = files.blank(blank.partition_name, blank.size_mb * 1024 * 1024)
        add(DiskSpec(path, disk_target(len(disks)), "raw"), blank.mount_as)
    return PreparedDisks(tuple(disks), tuple(bases), tuple(mounts))


def blank_name(partition_name: str) -> str:
    """The file name of a blank partition's disk."""
    cleaned = "".join(char if char.isalnum() or char in "-_." else "_" for char in partition_name)
    if not cleaned.strip("."):
        raise InvalidMetadata(f"blank partition name {partition_name!r} is not usable as a file name")
    return f"blank-{cleaned}.raw"


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise BackendError(f"{command[0]} failed: {result.stderr.strip() or result.returncode}")
