"""How long-running pool work (downloading an image, copying it to a node) reports how far it got.

A ``Progress`` is called with (bytes done, bytes in all) after every step of a download or
a copy; a download whose server announces no length reports 0 in all until its last call,
(bytes done, bytes done). One define may report a download, then a copy, each from 0.
It may raise (``vws.errors.Cancelled`` when the workspace is being destroyed) to stop
the work; the partial file of the interrupted step is removed. A define waiting for another
one's download or copy (``storage.locks.acquire``) hears (0, size) every half second meanwhile,
so it can be stopped while it waits too.
"""

from collections.abc import Callable

Progress = Callable[[int, int], None]
STEP = 64 << 20  # bytes a copy or an upload moves between two reports (and chances to stop it)


def ignore(done: int, total: int) -> None:
    """The ``Progress`` of a caller that does not watch."""
