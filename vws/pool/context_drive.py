"""The contextualization drive: what a guest needs to configure itself, on a read-only disk.

An ISO 9660 image (Rock Ridge and Joliet, volume label ``VWS-CONTEXT``, built with
``genisoimage``) attached as the domain's last virtio disk. Layout:

    vws/hostname          the first NIC's leased hostname (else the domain name)
    vws/network           one line per NIC, in NIC order:
                          name ip netmask gateway mac hostname dns broadcast pool
                          ('none' for a value the pool does not give; the first seven
                          fields are the order tests/integration/context_iso.py reads)
    vws/disks             one line per disk: mountAs-from-the-metadata guest-device
    vws/files/<path>      each ContextFile (filewrite), at its pathOnVM without the leading /
    vws/user-data         the mdServerUserdata string, when given
    vws/context/<name>    for a context member: the broker's bootstrap and the agent (vws/context)

It is generated only when the request has NICs, files or user data. On test-driver
nodes it is skipped by default: genisoimage costs about 5 ms a call and even writing the
layout ~0.4 ms, several times the rest of a define there (``test_node_context_iso``
turns it on, layout and ISO).
"""

import posixpath
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from vws.affinity import unpinned
from vws.errors import BackendError, InvalidMetadata
from vws.pool.machine import MachineRequest, NetworkLease

VOLUME_LABEL = "VWS-CONTEXT"


def needed(machine: MachineRequest) -> bool:
    return bool(machine.nics or machine.files or machine.userdata or machine.context)


def layout(
    machine: MachineRequest,
    leases: Sequence[NetworkLease],
    mounts: Sequence[tuple[str, str]],
    default_hostname: str,
) -> dict[str, bytes]:
    """Relative path -> content, for ``write_layout``."""
    files = {
        "vws/hostname": ((leases[0].hostname if leases else default_hostname) + "\n").encode(),
        "vws/network": "".join(_nic_line(lease) for lease in leases).encode(),
        "vws/disks": "".join(f"{mount_as} {device}\n" for mount_as, device in mounts).encode(),
    }
    for item in machine.files:
        files["vws/files/" + _relative(item.path_on_vm)] = item.content.encode()
    if machine.userdata is not None:
        files["vws/user-data"] = machine.userdata.encode()
    for item in machine.context:
        files["vws/context/" + _relative(item.path_on_vm)] = item.content.encode()
    return files


def write_layout(root: Path, files: Mapping[str, bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def build_iso(source: Path, iso: Path) -> None:
    with unpinned():
        result = subprocess.run(
            ["genisoimage", "-quiet", "-r", "-J", "-V", VOLUME_LABEL, "-o", str(iso), str(source)],
            capture_output=True,
            text=True,
        )
    if result.returncode:
        raise BackendError(f"genisoimage failed: {result.stderr.strip() or result.returncode}")


def _nic_line(lease: NetworkLease) -> str:
    values = (
        lease.nic,
        lease.ip,
        lease.netmask,
        lease.gateway,
        lease.mac,
        lease.hostname,
        lease.dns,
        lease.broadcast,
        lease.pool,
    )
    return " ".join(value or "none" for value in values) + "\n"


def _relative(path_on_vm: str) -> str:
    """pathOnVM without its leading slash; '..' or an empty path is refused."""
    normal = posixpath.normpath("/" + path_on_vm).lstrip("/")
    if not normal or ".." in path_on_vm.split("/") or normal.startswith("."):
        raise InvalidMetadata(f"file path on the VM {path_on_vm!r} is not a usable path")
    return normal
