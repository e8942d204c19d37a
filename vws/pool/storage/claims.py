"""What a request's disks hold while its workspace lives: a read-write partition is the
repository file itself, written in place, so only one live workspace may hold it (``claim``
refuses a second); read-only ones are shared."""

from sqlite_utils import Database

from vws.errors import RequestDenied
from vws.pool import downloads
from vws.pool.machine import MachineRequest
from vws.pool.storage import layers
from vws.pool.storage.files import blank_name
from vws.pool.storage.repository import Repository
from vws.store.rows import select


def check_request(repository: Repository, machine: MachineRequest) -> None:
    """Everything about a request's disks that can be refused before it is accepted."""
    disks = ([machine.root] if machine.root else []) + list(machine.partitions)
    kernel = [machine.kernel.image, machine.kernel.initrd] if machine.kernel else []
    for location in [disk.location for disk in disks] + [location for location in kernel if location]:
        repository.check(location)
        if not downloads.is_remote(location):  # a download's chain is checked once it is here
            layers.chain(repository.root, repository.resolve(location))
    for blank in machine.blank_disks:
        blank_name(blank.partition_name)


def claim(db: Database, repository: Repository, workspace_id: int, machine: MachineRequest) -> None:
    """Hold the request's partitions for the workspace: read-write ones exclusively."""
    for disk in machine.partitions:
        path = repository.key(disk.location)
        holders = select(db, "select * from image_claims where path = ? and workspace_id != ?", [path, workspace_id])
        if disk.writable and holders:
            raise RequestDenied(
                f"partition {disk.location} is in use by another workspace; read-write partitions cannot be shared"
            )
        if any(holder["writable"] for holder in holders):
            raise RequestDenied(f"partition {disk.location} is attached read-write to another workspace")
        db.execute(
            "insert or replace into image_claims (workspace_id, path, writable) values (?, ?, ?)",
            [workspace_id, path, int(disk.writable)],
        )


def release_claims(db: Database, workspace_id: int) -> None:
    db.execute("delete from image_claims where workspace_id = ?", [workspace_id])
