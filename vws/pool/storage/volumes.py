"""Images shipped to a node as libvirt storage volumes, for nodes that do not read this host's files.

Everything goes over the node's own libvirt connection (``qemu+ssh://``, ``qemu+tls://``):
no agent, no shared filesystem.

- **Pool**: one ``dir`` storage pool per node (``[pool] storage_pool``, at
  ``storage_pool_path`` on the node), defined, built, started and set to autostart
  where it is missing.
- **Base cache**: repository images (roots, read-only partitions, kernels and initrds)
  become volumes named by their sha256, uploaded once per node through a sparse stream
  (holes are sent as holes, not as zeros) with progress in ``progress.STEP`` steps;
  raising from the progress callback aborts the stream and deletes the partial volume.
  libvirt cannot rename a volume, so an upload cut off by a crash would leave a volume
  under its final name: a ``node_volumes`` row, written once the upload is complete,
  is what marks it usable, and its ``used_at`` orders eviction (``cache.room_for``).
- **A domain's volumes** are named ``<domain>.<file>`` (the file names of the local
  layout, ``files.ROOT_OVERLAY`` ...): the writable root is a qcow2 volume whose
  ``<backingStore>`` is the cached base, blank partitions are sparse raw volumes, the
  context ISO is uploaded, and the serial console is written into an empty volume, so
  every file of the domain is a volume that ``discard`` finds by its prefix.
- **Saving** a root (shutdown-save): libvirt clones the overlay into a new volume, which
  flattens it on the node (``qemu-img convert`` reads through the backing chain); the
  clone is downloaded, holes kept, into the repository, then deleted.
- Read-write partitions are repository files written in place: a remote node cannot
  open them, so they are refused.
"""

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path

import libvirt
from lxml import etree

from vws.clock import Clock, timestamp
from vws.config import PoolConfig
from vws.errors import BackendError, RequestDenied
from vws.pool.driver import Driver, translated
from vws.pool.progress import STEP, Progress, ignore
from vws.pool.storage import cache, files, layers, locks
from vws.pool.storage.local import copy_sparse
from vws.pool.storage.repository import Repository
from vws.store.database import Store

log = logging.getLogger(__name__)


class NodeVolumes:
    """vws's storage pool on one node: the base cache and every domain's volumes.

    ``keep`` and ``take`` are as for ``local.NodeCache``.
    """

    def __init__(
        self,
        driver: Driver,
        store: Store,
        clock: Clock,
        config: PoolConfig,
        keep: Callable[[], set[Path]] = set,
        take: Callable[[Path], None] = lambda base: None,
    ) -> None:
        self.node = driver.node
        self.name = f"node {driver.node}"
        self._conn = driver.connection
        self._store = store
        self._clock = clock
        self.limit_bytes = config.image_cache_mb << 20
        self.keep = keep
        self.take = take
        with locks.keyed_lock((self.node, "pool")), self._translated("open storage pool", config.storage_pool):
            self._pool = _started_pool(self._conn, config.storage_pool, config.storage_pool_path)

    # ---- the base cache ---------------------------------------------------------------

    # A ``cache.BaseCache``: a base volume is named by its digest (and so is its file).

    def cached(self, source: Path, digest: str, progress: Progress = ignore) -> Path:
        """The node's volume holding ``source`` (sha256 ``digest``), uploaded if it has none."""
        return cache.cached_base(self, source, digest, progress)

    def present(self, digest: str) -> Path | None:
        volume = self._volume(digest)
        if volume is not None and self._complete(digest):
            return Path(volume.path())
        if volume is not None:  # cut off by a crash, or not ours: start again
            self._delete(volume)
        return None

    def touch(self, base: Path) -> None:
        self._used(base.name)

    def fill(self, source: Path, digest: str, progress: Progress, backing: tuple[str, str] | None = None) -> Path:
        started = self._clock.monotonic()
        if backing is None:
            path = self.upload(digest, source, progress)
        else:  # a layer: a copy pointing at the volume below is what travels
            with tempfile.TemporaryDirectory(prefix="vws-layer-") as staging:
                staged = Path(staging) / digest
                copy_sparse(source, staged)
                layers.rebase(staged, backing)
                path = self.upload(digest, staged, progress)
        self._used(digest)  # complete: usable from now on
        log.info(
            "uploaded %s (%d MB) to %s in %.1f s",
            source.name,
            source.stat().st_size >> 20,
            self.node,
            self._clock.monotonic() - started,
        )
        return path

    def bases(self) -> list[tuple[Path, int]]:
        """(base, bytes allocated), least recently used first."""
        with self._store.reading() as db:
            names = [row[0] for row in db.execute(_LEAST_RECENTLY_USED_FIRST, [self.node])]
        found = []
        for name in names:
            volume = self._volume(name)
            if volume is None:
                self._forget(name)  # deleted behind vws's back
                continue
            with self._translated("read size of", name):
                found.append((Path(volume.path()), volume.info()[2]))
        return found

    def below(self, base: Path) -> str | None:
        volume = self._volume(base.name)
        if volume is None:
            return None
        with self._translated("read backing store of", base.name):
            found = etree.fromstring(volume.XMLDesc(0).encode()).findtext("backingStore/path")
        return Path(found).name if found else None

    def delete(self, base: Path) -> None:
        self._forget(base.name)
        volume = self._volume(base.name)
        if volume is not None:
            self._delete(volume)

    # ---- volumes ----------------------------------------------------------------------

    def upload(self, name: str, source: Path, progress: Progress = ignore) -> Path:
        """A new volume holding a copy of the local file ``source``; deleted again if the upload fails."""
        size = source.stat().st_size
        with self._translated("create volume", name):
            volume = self._pool.createXML(_volume_xml(name, size, "raw"), 0)
        try:
            with self._translated("upload", name), open(source, "rb") as file:
                stream = self._conn.newStream(0)
                volume.upload(stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
                _send(stream, _SparseFile(file.fileno(), size, progress))
            progress(size, size)
        except BaseException:
            self._delete(volume)
            raise
        return Path(volume.path())

    def create(self, name: str, size: int, fmt: str, backing: tuple[Path, str] | None = None) -> Path:
        """A new empty volume of ``size`` bytes, a qcow2 over ``backing`` (path, format) if given."""
        with self._translated("create volume", name):
            return Path(self._pool.createXML(_volume_xml(name, size, fmt, backing), 0).path())

    def download_flattened(self, name: str, target: Path) -> None:
        """Volume ``name`` with its backing chain merged, as a standalone qcow2 at local ``target``."""
        source = self._volume(name)
        if source is None:
            raise BackendError(f"{self.node}: no volume {name} to save")
        flat_name = f"{name}.flat"
        leftover = self._volume(flat_name)
        if leftover is not None:  # a save cut off by a crash: this one starts again
            self._delete(leftover)
        with self._translated("flatten", name):
            flat = self._pool.createXMLFrom(_volume_xml(flat_name, source.info()[1], "qcow2"), source, 0)
        try:
            with self._translated("download", flat_name), open(target, "wb") as file:
                stream = self._conn.newStream(0)
                flat.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
                _receive(stream, file.fileno())
        finally:
            self._delete(flat)

    def discard(self, prefix: str) -> None:
        """Delete every volume whose name starts with ``prefix``."""
        with self._translated("list volumes"):
            doomed = [volume for volume in self._pool.listAllVolumes(0) if volume.name().startswith(prefix)]
        for volume in doomed:
            self._delete(volume)

    # ---- internals --------------------------------------------------------------------

    def _translated(self, action: str, name: str | None = None) -> AbstractContextManager[None]:
        return translated(self.node, action, name)

    def _volume(self, name: str) -> libvirt.virStorageVol | None:
        with self._translated("look up volume", name):
            try:
                return self._pool.storageVolLookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
        return None

    def _delete(self, volume: libvirt.virStorageVol) -> None:
        with self._translated("delete volume", volume.name()):
            try:
                volume.delete(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise  # else already gone

    def _complete(self, name: str) -> bool:
        with self._store.reading() as db:
            return db.execute(_IS_CACHED, [self.node, name]).fetchone() is not None

    def _used(self, name: str) -> None:
        with self._store.transaction() as db:
            db["node_volumes"].upsert(
                {"node": self.node, "name": name, "used_at": timestamp(self._clock.now())}, pk=("node", "name")
            )

    def _forget(self, name: str) -> None:
        with self._store.transaction() as db:
            db.execute("delete from node_volumes where node = ? and name = ?", [self.node, name])


_LEAST_RECENTLY_USED_FIRST = "select name from node_volumes where node = ? order by used_at"
_IS_CACHED = "select 1 from node_volumes where node = ? and name = ?"


class UploadedFiles:
    """``files.DomainFiles`` for an upload node: the domain's disks and files as volumes."""

    def __init__(self, volumes: NodeVolumes, store: Store, domain: str, directory: Path, repository_root: Path) -> None:
        self._volumes = volumes
        self._store = store
        self._root = repository_root  # a layer's chain stays inside it
        self._prefix = f"{domain}."
        self._directory = directory  # local scratch: the context drive is built here

    def base(self, source: Path, progress: Progress) -> Path:
        return layers.cached(self._volumes, self._store, self._root, source, progress)

    def overlay(self, base: Path, base_format: str, size: int) -> Path:
        return self._volumes.create(self._name(files.ROOT_OVERLAY), size, "qcow2", (base, base_format))

    def blank(self, name: str, size: int) -> Path:
        return self._volumes.create(self._name(files.blank_name(name)), size, "raw")

    def in_place(self, source: Path) -> Path:
        raise RequestDenied(
            f"read-write partition {source.name} is written in place in the image repository, which node "
            f"{self._volumes.node} cannot reach (its images are uploaded); ask for it ReadOnly"
        )

    def boot_file(self, source: Path, progress: Progress) -> Path:
        return self.base(source, progress)

    def attach(self, local: Path) -> Path:
        return self._volumes.upload(self._name(local.name), local)

    def console_log(self) -> Path:
        return self._volumes.create(self._name(files.CONSOLE_LOG), 0, "raw")

    def save_root(self, repository: Repository, target: str) -> str:
        root = self._name(files.ROOT_OVERLAY)
        return repository.receive(target, lambda partial: self._volumes.download_flattened(root, partial))

    def discard(self) -> None:
        self._volumes.discard(self._prefix)
        shutil.rmtree(self._directory, ignore_errors=True)

    def _name(self, file_name: str) -> str:
        return self._prefix + file_name


# ---- the pool -------------------------------------------------------------------------


def _started_pool(conn: libvirt.virConnect, name: str, path: str) -> libvirt.virStoragePool:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
        pool = conn.storagePoolDefineXML(_pool_xml(name, path), 0)
        pool.setAutostart(1)
    if not pool.isActive():
        pool.build(0)  # makes the directory if it is missing
        pool.create(0)
    return pool


def pool_problem(conn: libvirt.virConnect, name: str, path: str) -> str | None:
    """Why the node's storage pool ``name`` cannot serve as vws's at ``path``; None when it can, or is
    missing (it is made at first use)."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise
    described = etree.fromstring(pool.XMLDesc(0).encode())
    if described.get("type") != "dir":
        return f"storage pool {name} is a {described.get('type')} pool; vws needs a dir pool"
    if described.findtext("target/path") != path:
        return f"storage pool {name} is at {described.findtext('target/path')}, not at [pool] storage_pool_path {path}"
    return None


def _pool_xml(name: str, path: str) -> str:
    pool = etree.Element("pool", type="dir")
    etree.SubElement(pool, "name").text = name
    etree.SubElement(etree.SubElement(pool, "target"), "path").text = path
    return etree.tostring(pool, encoding="unicode")


def _volume_xml(name: str, size: int, fmt: str, backing: tuple[Path, str] | None = None) -> str:
    volume = etree.Element("volume")
    etree.SubElement(volume, "name").text = name
    etree.SubElement(volume, "capacity", unit="bytes").text = str(size)
    etree.SubElement(volume, "allocation", unit="bytes").text = "0"  # sparse
    etree.SubElement(etree.SubElement(volume, "target"), "format", type=fmt)
    if backing is not None:
        store = etree.SubElement(volume, "backingStore")
        etree.SubElement(store, "path").text = str(backing[0])
        etree.SubElement(store, "format", type=backing[1])
    return etree.tostring(volume, encoding="unicode")


# ---- streams ----------------------------------------------------------------------------


class _SparseFile:
    """``virStream.sparseSendAll`` callbacks over one file: its data and holes (SEEK_DATA,
    SEEK_HOLE), with progress each time the offset passes another ``STEP``."""

    def __init__(self, fd: int, size: int, progress: Progress) -> None:
        self._fd = fd
        self._size = size
        self._progress = progress
        self._reported = 0

    def section(self, _stream: libvirt.virStream, _opaque: None) -> tuple[bool, int]:
        """(in data?, bytes to the end of this data or hole); leaves the offset where it was."""
        offset = os.lseek(self._fd, 0, os.SEEK_CUR)
        if offset >= self._size:
            return True, 0  # read() then returns b"": the end
        try:
            data = os.lseek(self._fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            data = self._size
        if data > offset:
            found = False, data - offset
        else:
            found = True, os.lseek(self._fd, offset, os.SEEK_HOLE) - offset
        os.lseek(self._fd, offset, os.SEEK_SET)
        return found

    def read(self, _stream: libvirt.virStream, length: int, _opaque: None) -> bytes:
        chunk = os.read(self._fd, length)
        self._reached(os.lseek(self._fd, 0, os.SEEK_CUR))
        return chunk

    def skip(self, _stream: libvirt.virStream, length: int, _opaque: None) -> int:
        offset = os.lseek(self._fd, length, os.SEEK_CUR)
        self._reached(offset)
        return offset

    def _reached(self, offset: int) -> None:
        if offset - self._reported >= STEP:
            self._reported = offset
            self._progress(offset, self._size)


def _send(stream: libvirt.virStream, source: _SparseFile) -> None:
    # sparseSendAll does not abort the stream when a callback raises: do it here, so the
    # node drops the upload instead of waiting for more data.
    try:
        stream.sparseSendAll(source.read, source.section, source.skip, None)
        stream.finish()
    except BaseException:
        with suppress(libvirt.libvirtError):
            stream.abort()
        raise


def _receive(stream: libvirt.virStream, fd: int) -> None:
    def hole(_stream: libvirt.virStream, length: int, _opaque: None) -> None:
        os.ftruncate(fd, os.lseek(fd, length, os.SEEK_CUR))  # so a trailing hole still counts

    try:
        stream.sparseRecvAll(lambda _stream, data, _opaque: os.write(fd, data), hole, None)
        stream.finish()
    except BaseException:
        with suppress(libvirt.libvirtError):
            stream.abort()
        raise
