"""The contextualization drive as the test guest reads it: ISO 9660, volume label VWSCTX.

Layout (Rock Ridge and Joliet names):

    vws/hostname            one line
    vws/network             one line per NIC: <nic> <ip> <netmask> <gateway> <mac> <hostname> <dns>,
                            'none' for an absent field
    vws/files/<path-on-vm>  each file to write into the guest, without the leading '/'
    vws/user-data           the user data, when given
"""

import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.integration.proc import run

VOLUME_LABEL = "VWSCTX"


@dataclass(frozen=True)
class Nic:
    name: str
    ip: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    mac: str | None = None
    hostname: str | None = None
    dns: str | None = None

    def line(self) -> str:
        fields = (self.name, self.ip, self.netmask, self.gateway, self.mac, self.hostname, self.dns)
        return " ".join(field or "none" for field in fields) + "\n"


def make_context_iso(
    path: Path,
    hostname: str,
    nics: Sequence[Nic] = (),
    files: Mapping[str, bytes | str] | None = None,
    userdata: bytes | str | None = None,
) -> Path:
    """Write the drive to ``path``; ``files`` maps a path on the VM to its content."""
    layout: dict[str, bytes] = {
        "vws/hostname": f"{hostname}\n".encode(),
        "vws/network": "".join(nic.line() for nic in nics).encode(),
    }
    for path_on_vm, content in (files or {}).items():
        layout["vws/files/" + _relative(path_on_vm)] = _bytes(content)
    if userdata is not None:
        layout["vws/user-data"] = _bytes(userdata)
    with tempfile.TemporaryDirectory() as source:
        for relative, content in layout.items():
            target = Path(source, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        run(["genisoimage", "-quiet", "-R", "-J", "-V", VOLUME_LABEL, "-o", path, source])
    return path


def _relative(path_on_vm: str) -> str:
    normal = posixpath.normpath("/" + path_on_vm).lstrip("/")
    if not normal or ".." in path_on_vm.split("/"):
        raise ValueError(f"not a usable path on the VM: {path_on_vm!r}")
    return normal


def _bytes(content: bytes | str) -> bytes:
    return content.encode() if isinstance(content, str) else content
