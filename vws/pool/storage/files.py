"""Where one domain's disks and files go on its node (``DomainFiles``), and the names they take."""

from pathlib import Path
from typing import Protocol

from vws.errors import InvalidMetadata
from vws.pool.progress import Progress
from vws.pool.storage.repository import Repository

# A domain's own files, named alike in its directory and (prefixed) as volumes.
ROOT_OVERLAY = "root.qcow2"
CONSOLE_LOG = "console.log"


class DomainFiles(Protocol):
    """Where one domain's disks and files go on its node; every path returned is as the node sees it.

    ``local.LocalFiles`` (state-dir files the node reads), ``volumes.UploadedFiles`` (storage
    volumes on the node). Each new file is the domain's own, and ``discard`` deletes them
    all; ``base`` copies are shared by content and stay. tests/test_pool_domain_files.py holds
    both to this one contract.
    """

    def base(self, source: Path, progress: Progress) -> Path:
        """The node's cached copy of repository image ``source``, made if missing."""
        ...

    def overlay(self, base: Path, base_format: str, size: int) -> Path:
        """A new empty qcow2 root of ``size`` bytes over ``base``."""
        ...

    def blank(self, name: str, size: int) -> Path:
        """A new sparse raw disk for blank partition ``name``."""
        ...

    def in_place(self, source: Path) -> Path:
        """Repository file ``source`` itself, for a read-write partition."""
        ...

    def boot_file(self, source: Path, progress: Progress) -> Path:
        """Repository kernel or initrd ``source``."""
        ...

    def attach(self, local: Path) -> Path:
        """A file made for the domain in its local directory (the context drive)."""
        ...

    def console_log(self) -> Path:
        """Where the domain's serial console is written."""
        ...

    def save_root(self, repository: Repository, target: str) -> str:
        """The root overlay, flattened, as a new repository image at ``target``; its URI."""
        ...

    def discard(self) -> None:
        """Delete the domain's own files; any that are missing are fine."""
        ...


def blank_name(partition_name: str) -> str:
    """The file name of a blank partition's disk."""
    cleaned = "".join(char if char.isalnum() or char in "-_." else "_" for char in partition_name)
    if not cleaned.strip("."):
        raise InvalidMetadata(f"blank partition name {partition_name!r} is not usable as a file name")
    return f"blank-{cleaned}.raw"
