"""One lock per thing being worked on (a download, a base's copy to a node, a probe), and a wait
on it that keeps a define cancellable while another define holds it."""

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from vws.pool.progress import Progress

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
