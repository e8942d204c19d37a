"""The state dir holds secrets: users' mdServerUserdata and filewrite contents (in vws.sqlite and
its -wal and -shm files) and, with the development CA, private keys (security/).

So it is 0700 and every file in it 0600, whatever the umask vws was started with: vws-service
and vws-admin create everything under umask 077 (``keep_private``), the database is created
0600 (SQLite gives its -wal and -shm files the database's mode), and start-up (a warning) and
``vws-admin check`` (a problem) name, through ``exposed``, whatever other users can reach.
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


# Few files, and secrets (the development CA's private keys, the grid-mapfile): always looked at.
SECRETS_DIR = "security"


def exposed(state_dir: Path) -> list[str]:
    """Each directory and file in the state dir (itself included) that other users may use, as 'path (0644)'.

    What the state dir holds directly and everything in security/ is always looked at;
    beneath any other directory only when that directory is open to them, as one closed
    to them (0700) keeps them from everything beneath it. So the state dir costs a handful
    of checks, however many images and workspaces it holds.
    """
    found: list[str] = []
    if not state_dir.is_dir():
        return found
    _open_to_others(state_dir, found)
    for directory, subdirectories, files in os.walk(state_dir):
        here = Path(directory)
        secrets = here.relative_to(state_dir).parts[:1] == (SECRETS_DIR,)
        subdirectories.sort()
        subdirectories[:] = [
            name
            for name in subdirectories
            if _open_to_others(here / name, found) or secrets or (here == state_dir and name == SECRETS_DIR)
        ]
        for name in sorted(files):
            _open_to_others(here / name, found)
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


def _open_to_others(path: Path, found: list[str]) -> bool:
    """Whether group or others have any permission on ``path`` (a symlink's own mode says nothing);
    if so it is added to ``found``."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode) or not stat.S_IMODE(mode) & 0o077:
        return False
    found.append(f"{path} ({stat.S_IMODE(mode):04o})")
    return True
