"""What a waiting client prints: one line per state change, and how far image copies are.

On a terminal the copies share one line redrawn in place, a bar for each; in a log or
a pipe each copy gets a plain line at every tenth of the way (every 64 MB while its
size is unknown), so a script's output stays short and readable.
"""

import sys
from typing import TextIO

from clients.resource import Copy

BAR = 24  # characters
_UNKNOWN_STEP = 64 * 2**20  # bytes between plain lines for a copy of unknown size


class Display:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._terminal = self._stream.isatty()
        self._copies: dict[str, Copy] = {}
        self._steps: dict[str, int] = {}  # the last step a plain line was printed for, per workspace
        self._bar_shown = False

    def line(self, text: str) -> None:
        self._end_bar()
        print(text, file=self._stream, flush=True)

    def copying(self, name: str, copy: Copy) -> None:
        """Report ``copy`` of the workspace called ``name`` (a bar, or a line when a step is passed)."""
        if self._terminal:
            self._copies[name] = copy
            self._draw()
            return
        step = copy.percent // 10 if copy.total else copy.done // _UNKNOWN_STEP
        if step != self._steps.get(name):
            self._steps[name] = step
            self.line(f"{name}: {copy}")

    def copied(self, name: str) -> None:
        """The workspace called ``name`` has no copy in flight any more."""
        self._steps.pop(name, None)
        if self._copies.pop(name, None) is None:
            return
        if self._copies:
            self._draw()
        else:
            self._end_bar()

    def _draw(self) -> None:
        text = "  ".join(f"{name}: {_bar(copy)}" for name, copy in self._copies.items())
        self._stream.write(f"\r{text}\x1b[K")  # \x1b[K: clear what a longer line left behind
        self._stream.flush()
        self._bar_shown = True

    def _end_bar(self) -> None:
        if self._bar_shown:
            self._stream.write("\n")
            self._bar_shown = False


def _bar(copy: Copy) -> str:
    if copy.percent is None:
        return str(copy)
    filled = BAR * copy.percent // 100
    return f"[{'#' * filled}{'.' * (BAR - filled)}] {copy}"
