"""Images: the repository, per-node caches keyed by content, and per-workspace disks.

- **Repository** (``PoolConfig.image_repository``, default ``<state>/images`` with a sample
  ``ttylinux-xen``): ``file://name`` is relative to it; ``file:///abs/path`` must lie
  inside it (a user may not attach arbitrary files of the service host);
  ``http(s)://host/path[#sha256=<hex>]`` only for hosts in ``allowed_image_hosts``, streamed
  once into ``<repository>/.downloads`` under ``max_image_download_mb`` and reused after (no
  revalidation; see ``downloads.py`` for the cap and the pin).
- **Checksums**: sha256 of a repository file, stored in ``image_checksums`` and reused
  while its (size, mtime) hold, so a large base is hashed once, not per workspace.
- **Node cache**: ``<node dir>/cache/<sha256>``, copied once per node (holes kept), named
  by content so a changed image never hides behind a stale copy. Only local nodes
  (test, ``qemu:///system``) have a node dir; shipping images to remote nodes is not
  implemented. With ``image_cache_mb`` set, least recently used bases that no defined
  domain reads through are evicted.
- **Per-workspace disks**: a writable root is a qcow2 overlay over the cached base
  (``qcow2.write_overlay``: constant cost whatever the base size); a read-only root or
  partition is the cached base itself, attached read-only and shareable; a read-write
  partition is the repository file itself, written in place, so only one live workspace
  may hold it (``claim`` refuses a second); blank partitions are sparse raw files.
"""

import hashlib
import logging
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from vws.errors import BackendError, InvalidMetadata, RequestDenied
from vws.pool import downloads, qcow2
from vws.pool.designer import disk_target
from vws.pool.domain_xml import DiskSpec
from vws.pool.machine import MachineRequest
from vws.pool.progress import Progress, ignore
from vws.store.database import Store
from vws.store.rows import one, select

log = logging.getLogger(__name__)

SAMPLE_IMAGE = "ttylinux-xen"
SAMPLE_SIZE = 64 * 1024 * 1024
_STEP = 64 << 20  # bytes copied between two progress reports (and chances to cancel)


class Repository:
    def __init__(self, root: Path, allowed_hosts: Iterable[str] = (), max_download_mb: int = 0) -> None:
        self.root = root.resolve()
        self.allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
        self.max_download_bytes = max_download_mb << 20
        self._guard = threading.Lock()
        self._downloading: dict[Path, threading.Lock] = {}  # one download per file at a time

    def key(self, location: str) -> str:
        """What two requests for the same image have in common: a path, or the URL (no pin)."""
        if downloads.is_remote(location):
            return self._remote(location).url
        return str(self._local(location))

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
        path = self._local(target)
        if path.exists():
            raise RequestDenied(f"image {target} already exists in the repository")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        _run(["qemu-img", "convert", "-q", "-O", "qcow2", str(source), str(partial)])
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
        with self._lock(path):
            if not (path.exists() and downloads.matches(path, remote.sha256)):
                path.parent.mkdir(parents=True, exist_ok=True)
                downloads.fetch(
                    remote,
                    path,
                    allowed_hosts=self.allowed_hosts,
                    limit_bytes=self.max_download_bytes,
                    progress=progress,
                )
        return path

    def _lock(self, path: Path) -> threading.Lock:
        with self._guard:
            return self._downloading.setdefault(path, threading.Lock())


# ---- checksums and the node cache -------------------------------------------------------


def checksum(store: Store, path: Path) -> str:
    """sha256 of ``path``, hashed only when its size or mtime changed since last time."""
    stat = path.stat()
    with store.reading() as db:
        known = one(db, "select * from image_checksums where path = ?", [str(path)])
    if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
        return known["sha256"]
    digest = downloads.sha256_file(path)  # outside the store lock: a large image takes seconds
    with store.transaction() as db:
        db["image_checksums"].upsert(
            {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}, pk="path"
        )
    return digest


class NodeCache:
    """Base images copied to one node, named by their sha256."""

    def __init__(self, directory: Path, limit_mb: int = 0) -> None:
        self.directory = directory
        self.limit_bytes = limit_mb * 1024 * 1024

    def base(self, source: Path, digest: str, progress: Progress = ignore) -> Path:
        cached = self.directory / digest
        with _copying(cached):  # two deployments needing one base copy it once
            if cached.exists():
                os.utime(cached)  # recently used: evicted last
                return cached
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.directory / f".{digest}.partial.{os.getpid()}"
            try:
                copy_sparse(source, partial, progress)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, cached)
            return cached

    def evict(self, in_use: set[Path]) -> list[Path]:
        """Delete least recently used bases until under the limit; bases in use always stay."""
        if not self.limit_bytes or not self.directory.exists():
            return []
        bases = sorted(
            (path for path in self.directory.iterdir() if not path.name.startswith(".")),
            key=lambda path: path.stat().st_mtime_ns,
        )
        total = sum(_allocated(path) for path in bases)
        evicted = []
        for path in bases:
            if total <= self.limit_bytes:
                break
            if path in in_use:
                continue
            total -= _allocated(path)
            path.unlink()
            evicted.append(path)
        return evicted


_copy_locks: dict[Path, threading.Lock] = {}
_copy_locks_guard = threading.Lock()


def _copying(cached: Path) -> threading.Lock:
    with _copy_locks_guard:
        return _copy_locks.setdefault(cached, threading.Lock())


def _allocated(path: Path) -> int:
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
        copied = os.copy_file_range(src, dst, min(length, _STEP), offset, offset)
        if copied == 0:
            raise OSError(f"short copy at offset {offset}")
        offset += copied
        length -= copied
        reached(offset)


# ---- claims -------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class PreparedDisks:
    disks: tuple[DiskSpec, ...]
    bases: tuple[Path, ...]  # cached bases the disks read through (kept out of eviction)
    mounts: tuple[tuple[str, str], ...]  # (mountAs from the metadata, guest device)


def prepare(
    store: Store,
    repository: Repository,
    cache: NodeCache,
    machine: MachineRequest,
    directory: Path,
    progress: Progress = ignore,
) -> PreparedDisks:
    """Create the workspace's disk files in ``directory``; the caller deletes it on failure."""
    disks: list[DiskSpec] = []
    bases: list[Path] = []
    mounts: list[tuple[str, str]] = []

    def add(spec: DiskSpec, mount_as: str) -> None:
        disks.append(spec)
        mounts.append((mount_as, spec.target))

    if machine.root is not None:
        base = _cached(store, repository, cache, machine.root.location, progress)
        bases.append(base)
        target = disk_target(len(disks))
        if machine.root.writable:
            overlay = directory / "root.qcow2"
            qcow2.write_overlay(overlay, base, qcow2.detect_format(base), qcow2.virtual_size(base))
            add(DiskSpec(overlay, target, "qcow2"), machine.root.mount_as)
        else:
            add(DiskSpec(base, target, qcow2.detect_format(base), readonly=True, shareable=True), machine.root.mount_as)
    for partition in machine.partitions:
        target = disk_target(len(disks))
        if partition.writable:
            path = repository.resolve(partition.location, progress)
            add(DiskSpec(path, target, qcow2.detect_format(path)), partition.mount_as)
        else:
            base = _cached(store, repository, cache, partition.location, progress)
            bases.append(base)
            add(DiskSpec(base, target, qcow2.detect_format(base), readonly=True, shareable=True), partition.mount_as)
    for blank in machine.blank_disks:
        path = directory / f"blank-{_safe(blank.partition_name)}.raw"
        with open(path, "xb") as file:
            file.truncate(blank.size_mb * 1024 * 1024)
        add(DiskSpec(path, disk_target(len(disks)), "raw"), blank.mount_as)
    return PreparedDisks(tuple(disks), tuple(bases), tuple(mounts))


def _cached(store: Store, repository: Repository, cache: NodeCache, location: str, progress: Progress) -> Path:
    source = repository.resolve(location, progress)
    return cache.base(source, checksum(store, source), progress)


def _safe(name: str) -> str:
    cleaned = "".join(char if char.isalnum() or char in "-_." else "_" for char in name)
    if not cleaned.strip("."):
        raise InvalidMetadata(f"blank partition name {name!r} is not usable as a file name")
    return cleaned


def kernel_files(repository: Repository, locations: Sequence[str | None]) -> list[Path | None]:
    return [None if location is None else repository.resolve(location) for location in locations]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise BackendError(f"{command[0]} failed: {result.stderr.strip() or result.returncode}")
