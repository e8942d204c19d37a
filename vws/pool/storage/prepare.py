"""A workspace's disks, the same for both kinds of node through ``DomainFiles``.

A writable root is a qcow2 overlay over the cached base; a read-only root or partition is the
cached base itself, attached read-only and shareable; a read-write partition is the repository
file itself, written in place (see ``claims``); blank partitions are sparse raw.
"""

from dataclasses import dataclass
from pathlib import Path

from vws.errors import InvalidMetadata
from vws.pool import qcow2
from vws.pool.designer import disk_target
from vws.pool.domain_xml import DiskSpec
from vws.pool.machine import MachineRequest
from vws.pool.progress import Progress, ignore
from vws.pool.storage import layers
from vws.pool.storage.files import DomainFiles
from vws.pool.storage.repository import Repository, checksum


@dataclass(frozen=True)
class PreparedDisks:
    disks: tuple[DiskSpec, ...]
    bases: tuple[Path, ...]  # cached bases the disks read through (kept out of eviction)
    mounts: tuple[tuple[str, str], ...]  # (mountAs from the metadata, guest device)


def prepare(
    repository: Repository, files: DomainFiles, machine: MachineRequest, progress: Progress = ignore
) -> PreparedDisks:
    """Make the workspace's disks through ``files``; the caller discards them on failure.

    Formats and sizes are read from the repository file, which the cached copy equals.
    """
    disks: list[DiskSpec] = []
    bases: list[Path] = []
    mounts: list[tuple[str, str]] = []

    def add(spec: DiskSpec, mount_as: str) -> None:
        disks.append(spec)
        mounts.append((mount_as, spec.target))

    def cached(location: str) -> tuple[Path, DiskSpec]:
        """The repository file and its cached copy, attached read-only and shareable."""
        source = repository.resolve(location, progress)
        base = files.base(source, progress)
        bases.append(base)
        fmt = qcow2.detect_format(source)
        return source, DiskSpec(base, disk_target(len(disks)), fmt, readonly=True, shareable=True)

    if machine.root is not None:
        if machine.root.layers:
            check_layers(repository, machine.root.location, tuple(machine.root.layers))
        source, spec = cached(machine.root.location)
        if machine.root.writable:
            overlay = files.overlay(spec.path, spec.format, qcow2.virtual_size(source))
            spec = DiskSpec(overlay, spec.target, "qcow2")
        add(spec, machine.root.mount_as)
    for partition in machine.partitions:
        if partition.writable:
            path = files.in_place(repository.resolve(partition.location, progress))
            add(DiskSpec(path, disk_target(len(disks)), qcow2.detect_format(path)), partition.mount_as)
        else:
            add(cached(partition.location)[1], partition.mount_as)
    for blank in machine.blank_disks:
        path = files.blank(blank.partition_name, blank.size_mb * 1024 * 1024)
        add(DiskSpec(path, disk_target(len(disks)), "raw"), blank.mount_as)
    return PreparedDisks(tuple(disks), tuple(bases), tuple(mounts))


def check_layers(repository: Repository, location: str, signed: tuple[str, ...]) -> None:
    """Refuse to copy a signed appliance whose layers changed since it was accepted."""
    chain = layers.chain(repository.root, repository.resolve(location))
    if tuple(checksum(repository.store, layer.path) for layer in chain) != signed:
        raise InvalidMetadata(f"the layers of {location} changed since its signed descriptor was checked")
