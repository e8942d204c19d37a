"""A deployment request as the workspace layer understands it: typed, validated, no XML.

vws/soap translates the GT4 ``VirtualWorkspace`` metadata and ``WorkspaceDeployment``
request into this; it is stored as JSON with the workspace so a restart can rebuild
the domain exactly as it was asked for.

The machine it describes is the pool's own request type, named here as part of this
layer's request model: the pool needs every field of it and cannot import this layer,
and a field-for-field copy translated at the boundary would be two homes for one
concept. Front ends build requests from this module alone and never reach into vws.pool.
"""

import dataclasses
import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vws.clock import parse_timestamp, timestamp
from vws.pool.machine import (
    BlankDiskRequest,
    ContextFile,
    DiskRequest,
    KernelRequest,
    MachineRequest,
    NicBandwidth,
    NicRequest,
    Rate,
    Vmm,
    bandwidth,
)

__all__ = [
    "BlankDiskRequest",
    "ContextFile",
    "DeploymentRequest",
    "DiskRequest",
    "KernelRequest",
    "MachineRequest",
    "NicBandwidth",
    "NicRequest",
    "Vmm",
    "Rate",
]


@dataclass(frozen=True)
class DeploymentRequest:
    name: str
    machine: MachineRequest
    duration: timedelta | None = None  # None: the policy's default running time
    initial_state: str = "Running"
    node_number: int = 1
    trash_at_shutdown: bool = False  # ShutdownMechanism Trash: at the lease's end, destroyed without a shutdown
    save_target: str | None = None  # PostShutdown rootPartitionUnpropagationTarget
    start_at: datetime | None = None  # an advance reservation's start (vws-res:reservation); None: now

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        fields["duration"] = None if self.duration is None else self.duration.total_seconds()
        fields["start_at"] = None if self.start_at is None else timestamp(self.start_at)
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "DeploymentRequest":
        return _parsed(text)


# Every read of a workspace parses its stored request, and the same few are read again and again
# (a client polling its state); requests are immutable, so the parsed one is shared.
@functools.lru_cache(maxsize=512)
def _parsed(text: str) -> DeploymentRequest:
    fields = json.loads(text)
    seconds = fields.pop("duration")
    machine = _machine(fields.pop("machine"))
    start = fields.pop("start_at", None)
    return DeploymentRequest(
        machine=machine,
        duration=None if seconds is None else timedelta(seconds=seconds),
        start_at=None if start is None else parse_timestamp(start),
        **fields,
    )


def _machine(fields: dict[str, Any]) -> MachineRequest:
    def many(kind: type, key: str) -> tuple:
        return tuple(_frozen(kind, item) for item in fields.pop(key, ()))  # () for a field newer than the row

    def one(kind: type, key: str) -> Any:
        value = fields.pop(key)
        return None if value is None else _frozen(kind, value)

    vmm = fields.pop("vmm", None)  # absent from requests stored before appliances were matched
    return MachineRequest(
        root=one(DiskRequest, "root"),
        vmm=None if vmm is None else Vmm(vmm["type"], tuple(vmm["versions"])),
        kernel=one(KernelRequest, "kernel"),
        partitions=many(DiskRequest, "partitions"),
        blank_disks=many(BlankDiskRequest, "blank_disks"),
        nics=many(NicRequest, "nics"),
        files=many(ContextFile, "files"),
        bandwidth=tuple(map(bandwidth, fields.pop("bandwidth", []))),
        context=many(ContextFile, "context"),
        **fields,
    )


def _frozen(kind: type, fields: dict[str, Any]) -> Any:
    """``kind`` from its JSON fields, JSON's lists made tuples again: a request is immutable (and shared)."""
    return kind(**{name: tuple(value) if isinstance(value, list) else value for name, value in fields.items()})
