"""How long-running pool work (copying an image to a node) reports how far it got.

A ``Progress`` is called with (bytes done, bytes in all) after every step of a copy.
It may raise (``vws.errors.Cancelled`` when the workspace is being destroyed) to stop
the copy; the step that was interrupted leaves only a partial file its caller removes.
"""

from collections.abc import Callable

Progress = Callable[[int, int], None]


def ignore(done: int, total: int) -> None:
    """The ``Progress`` of a caller that does not watch."""
