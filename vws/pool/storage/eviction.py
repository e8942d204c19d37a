"""What leaves a node's image cache to make room: least recently used bases first, never one a
defined domain reads through (``pool_domains``) or a define in progress has taken (``Holds``); a
base that cannot fit even then is refused (``CacheFull``) before anything is evicted or copied."""

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vws.errors import BackendError


class CacheFull(BackendError):
    """A new base does not fit under ``image_cache_mb`` even with every base nobody uses gone."""


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
