"""A local node (``nodes.LOCAL``: test, ``qemu:///system``), which reads the state dir: its base
cache of files (``NodeCache``, ``<node dir>/cache/<sha256>``, holes kept) and its ``DomainFiles``
(``LocalFiles``: the domain's own in its directory; an overlay written by ``qcow2.write_overlay``
costs the same whatever the base size)."""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vws.errors import BackendError
from vws.pool import qcow2
from vws.pool.progress import STEP, Progress, ignore
from vws.pool.storage import layers
from vws.pool.storage.cache import allocated, cached_base
from vws.pool.storage.files import CONSOLE_LOG, ROOT_OVERLAY, blank_name
from vws.pool.storage.repository import Repository
from vws.store.database import Store


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

    def fill(self, source: Path, digest: str, progress: Progress, backing: tuple[str, str] | None = None) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        cached = self.directory / digest
        partial = self.directory / f".{digest}.partial.{os.getpid()}"
        try:
            copy_sparse(source, partial, progress)
            if backing is not None:
                layers.rebase(partial, backing)
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

    def below(self, base: Path) -> str | None:
        named = qcow2.backing(base)
        return None if named is None else named[0]


@dataclass(frozen=True)
class LocalFiles:
    """A local node's files: bases in its cache, the domain's own in ``directory``."""

    store: Store
    cache: NodeCache
    directory: Path
    repository_root: Path  # a layer's chain stays inside it

    def base(self, source: Path, progress: Progress) -> Path:
        return layers.cached(self.cache, self.store, self.repository_root, source, progress)

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
