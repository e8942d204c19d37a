"""The live child processes of a process, read from /proc (Linux)."""

from pathlib import Path


def children(pid: int) -> list[int]:
    """The child processes of ``pid``, whichever of its threads started them."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def signing_helpers(pid: int) -> list[int]:
    """The children of ``pid`` that are vws's signing helpers (``python -m vws.security.keyholder``)."""
    return [
        child for child in children(pid) if b"vws.security.keyholder" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
