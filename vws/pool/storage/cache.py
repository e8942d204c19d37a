"""Per-node caches of base images, keyed by content.

A base is named by its sha256, so a changed image never hides behind a stale copy. Local nodes
(``nodes.LOCAL``: test, ``qemu:///system``), which read the state dir, keep a ``NodeCache`` of
files in ``<node dir>/cache/<sha256>``, copied once per node with holes kept; upload nodes keep the
same cache as storage volumes (``volumes.NodeVolumes``). ``cached_base`` fills both alike, under
one lock per base (``base_lock``) that eviction takes too. With ``image_cache_mb`` set, room is
made before a new base is copied in (``room_for``, the one rule for both kinds of node; what goes
is ``eviction``'s to say). A define waiting for another's download, copy or room-making
(``locks.acquire``) keeps calling its progress, so a destroy or a stop need not wait for the
other's work to end.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from vws.pool.progress import Progress, ignore
from vws.pool.storage.eviction import CacheFull, to_evict
from vws.pool.storage.locks import acquire, keyed_lock

log = logging.getLogger(__name__)


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

    def fill(self, source: Path, digest: str, progress: Progress, backing: tuple[str, str] | None = None) -> Path:
        """Copy ``source`` in as the base of ``digest``, reporting progress; a failed copy leaves nothing.
        With ``backing`` (the cached base's name below it, its format), the copy is a layer over it."""
        ...

    def below(self, base: Path) -> str | None:
        """The name of the cached base that ``base``, a layer, is backed by (None: it is not a layer)."""
        ...

    def bases(self) -> list[tuple[Path, int]]:
        """(base, bytes allocated), least recently used first."""
        ...

    def delete(self, base: Path) -> None: ...


def cached_base(
    cache: BaseCache,
    source: Path,
    digest: str,
    progress: Progress = ignore,
    backing: tuple[str, str] | None = None,
) -> Path:
    """The cache's base holding ``source`` (sha256 ``digest``), copied in if it has none, after
    room was made; two defines needing one base copy it once, the second waiting (``acquire``).
    With ``backing`` it is a layer over that cached base (see ``layers``)."""
    with acquire(base_lock(cache, digest), progress):
        base = cache.present(digest)
        if base is not None:
            cache.touch(base)
        else:
            with room_for(cache, allocated(source), source.stat().st_size, progress):
                base = cache.fill(source, digest, progress, backing)
        cache.take(base)
    return base


def base_lock(cache: BaseCache, digest: str) -> threading.Lock:
    """The lock held while the base of ``digest`` is copied in, handed out or evicted."""
    return keyed_lock((cache.name, "base", digest))


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
    bases = cache.bases()
    keep = cache.keep() | _named_below(cache, [path for path, _ in bases])
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


def _named_below(cache: BaseCache, bases: list[Path]) -> set[Path]:
    """The cached bases that a cached layer above names as its backing file: a chain never breaks."""
    by_name = {base.name: base for base in bases}
    return {by_name[name] for base in bases if (name := cache.below(base)) in by_name}


def allocated(path: Path) -> int:
    """Bytes a file takes on disk (holes take none)."""
    return path.stat().st_blocks * 512


def _mb(size: int) -> int:
    return -(-size // (1 << 20))
