"""The image repository and the sha256 of its files.

``PoolConfig.image_repository`` (default ``<state>/images``, with a sample ``ttylinux-xen``):
``file://name`` is relative to it; ``file:///abs/path`` must lie inside it (a user may not attach
arbitrary files of the service host); ``http(s)://host/path[#sha256=<hex>]`` only for hosts in
``allowed_image_hosts``, streamed once into ``<repository>/.downloads`` under
``max_image_download_mb`` and reused after (no revalidation; see ``downloads.py`` for the cap and
the pin).

Checksums: the sha256 of a repository file is stored in ``image_checksums`` and reused while its
(size, mtime) hold, so a large base is hashed once, not per workspace; a download's is the one
computed as it streamed in, so it is never hashed again.
"""

import hashlib
import os
import subprocess
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

from vws.affinity import unpinned
from vws.errors import BackendError, InvalidMetadata, RequestDenied
from vws.pool import downloads
from vws.pool.progress import Progress, ignore
from vws.pool.storage.locks import acquire, keyed_lock
from vws.store.database import Store
from vws.store.rows import one

SAMPLE_IMAGE = "ttylinux-xen"
SAMPLE_SIZE = 64 * 1024 * 1024


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

    def images(self) -> list[str]:
        """The names of the repository's images (each is ``file://<name>``): its files, none hidden or partial."""
        return sorted(
            relative.as_posix()
            for relative in (path.relative_to(self.root) for path in self.root.rglob("*") if path.is_file())
            if not any(part.startswith(".") for part in relative.parts)
        )

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


def _run(command: list[str]) -> None:
    with unpinned():
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise BackendError(f"{command[0]} failed: {result.stderr.strip() or result.returncode}")
