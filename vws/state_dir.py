"""The state dir holds secrets: users' mdServerUserdata and filewrite contents (in vws.sqlite and
its -wal and -shm files) and, with the development CA, private keys (security/).

So it is 0700 and every file in it 0600, whatever the umask vws was started with: vws-service
and vws-admin create everything under umask 077 (``keep_private``), the database is created
0600 (SQLite gives its -wal and -shm files the database's mode), and start-up (a warning) and
``vws-admin check`` (a problem) name, through ``exposed``, whatever is open to other users.
"""

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def keep_private() -> None:
    """From now on this process creates files 0600 and directories 0700."""
    os.umask(PRIVATE_UMASK)


def create(state_dir: Path) -> None:
    """The state dir, 0700 when it is new."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def exposed(state_dir: Path) -> list[str]:
    """Each directory and file in the state dir (itself included) that other users may use, as 'path (0644)'."""
    found = []
    for path in _tree(state_dir):
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
            found.append(f"{path} ({stat.S_IMODE(mode):04o})")
    return found


def exposure_warning(state_dir: Path, limit: int = 3) -> str | None:
    """One line on what ``exposed`` found, with the fix; None when nothing is open to others."""
    found = exposed(state_dir)
    if not found:
        return None
    shown = ", ".join(found[:limit]) + (f" and {len(found) - limit} more" if len(found) > limit else "")
    return (
        f"{state_dir} holds users' userdata and private keys, but other users may read {shown}: "
        f"run chmod -R go= {state_dir}"
    )


def _tree(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    paths = [root]
    for directory, subdirectories, files in os.walk(root):
        paths += [Path(directory, name) for name in sorted(subdirectories) + sorted(files)]
    return paths
