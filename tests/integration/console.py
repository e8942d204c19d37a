"""Follow a guest's serial console, written to a file by qemu (``<serial type='file'>``)."""

import re
import time
from pathlib import Path

# A line that means waiting longer is pointless: the guest died or its /init gave up.
FAILURE = r"Kernel panic|VWS-GUEST-ERROR"
POLL_INTERVAL = 0.05


class ConsoleTimeout(TimeoutError):
    pass


class ConsoleFailure(AssertionError):
    pass


def wait_for_line(log_path: Path, pattern: str | re.Pattern[str], timeout: float, failure: str | None = FAILURE) -> str:
    """The first complete console line that matches ``pattern`` (re.search), waiting for it.

    Raises ConsoleFailure as soon as a line matches ``failure`` and ConsoleTimeout after
    ``timeout`` seconds; both carry the console's tail.
    """
    wanted = re.compile(pattern)
    fatal = re.compile(failure) if failure else None
    deadline = time.monotonic() + timeout
    # qemu owns the file and the stdlib has no inotify: poll its size at a short interval.
    offset, partial = 0, b""
    while True:
        chunk, offset = _read_from(log_path, offset)
        *lines, partial = (partial + chunk).split(b"\n")
        for line in (raw.decode(errors="replace").rstrip("\r") for raw in lines):
            if wanted.search(line):
                return line
            if fatal and fatal.search(line):
                raise ConsoleFailure(f"console shows {line!r}\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise ConsoleTimeout(f"no line matching {wanted.pattern!r} in {timeout:.0f} s\n{tail(log_path)}")
        time.sleep(POLL_INTERVAL)


def console_lines(log_path: Path) -> list[str]:
    """The complete lines written so far, without line ends."""
    return [line.rstrip("\r") for line in _text(log_path).split("\n")[:-1]]


def tail(log_path: Path, lines: int = 30) -> str:
    """The last lines, a partial one included, for error messages."""
    last = _text(log_path).replace("\r", "").splitlines()[-lines:]
    return "\n".join([f"--- tail of {log_path} ---", *last])


def _text(log_path: Path) -> str:
    return log_path.read_bytes().decode(errors="replace") if log_path.exists() else ""


def _read_from(log_path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            chunk = log.read()
    except FileNotFoundError:  # qemu has not created it yet
        return b"", offset
    return chunk, offset + len(chunk)
