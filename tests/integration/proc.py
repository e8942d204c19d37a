"""Run a host tool; a failure names the command and quotes its stderr."""

import subprocess
from collections.abc import Sequence
from pathlib import Path


class CommandFailed(RuntimeError):
    pass


def run(command: Sequence[str | Path], cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    """The command's stdout; raises CommandFailed when it exits non-zero."""
    argv = [str(arg) for arg in command]
    result = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True)
    if result.returncode:
        stderr = result.stderr.decode(errors="replace").strip()
        raise CommandFailed(f"{' '.join(argv)} exited {result.returncode}: {stderr}")
    return result.stdout
