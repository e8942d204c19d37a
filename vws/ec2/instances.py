"""Workspaces as EC2 instances: their state names and codes, and their DescribeInstances item."""

from dataclasses import dataclass

from vws.ec2 import ids
from vws.ec2.records import Launch
from vws.workspace.records import Workspace
from vws.workspace.states import State

# EC2's instance states and the codes its API gives them.
CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

_STATES = {
    State.UNPROPAGATED: "pending",
    State.PROPAGATED: "stopped",
    State.RUNNING: "running",
    State.PAUSED: "stopped",
    State.UNPROPAGATING: "stopping",
    State.TRANSPORT_READY: "stopped",
    State.CORRUPTED: "stopped",  # with a stateReason saying what went wrong
    State.CANCELLED: "shutting-down",
    State.DESTROYED: "terminated",
}


def state_name(workspace: Workspace) -> str:
    if workspace.state is State.PROPAGATED and workspace.work_owed:
        return "pending"  # still being brought up to Running
    return _STATES[workspace.state]


def state(workspace: Workspace) -> dict[str, object]:
    name = state_name(workspace)
    return {"code": CODES[name], "name": name}


@dataclass(frozen=True)
class Shape:
    """What the door knows beyond the workspace: the zone, instance-type table and image names."""

    zone: str
    types: dict[str, tuple[int, int]]  # name -> (vcpus, memory_mb)

    def instance_type(self, workspace: Workspace, launch: Launch | None) -> str:
        if launch is not None:
            return launch.instance_type
        machine = workspace.request.machine
        for name, size in self.types.items():
            if size == (machine.vcpus, machine.memory_mb):
                return name
        return f"vws.custom-{machine.vcpus}cpu-{machine.memory_mb}mb"  # made over WSRF, to no type's size


def reservation(workspace: Workspace, launch: Launch | None) -> str:
    if launch is not None:
        return launch.reservation_id
    return ids.group_reservation_id(workspace.group_key) if workspace.group_key else ids.reservation_id(workspace.id)


def image_of(workspace: Workspace) -> str | None:
    root = workspace.request.machine.root
    if root is None:
        return None
    return ids.image_id(root.location.removeprefix("file://"))


def item(workspace: Workspace, launch: Launch | None, tags: dict[str, str], shape: Shape) -> dict[str, object]:
    """One instance, as DescribeInstances and RunInstances answer it."""
    lease = workspace.leases[0] if workspace.leases else None
    return {
        "instanceId": ids.instance_id(workspace.id),
        "imageId": launch.image_id if launch else image_of(workspace),
        "instanceState": state(workspace),
        "privateDnsName": lease.hostname if lease else "",
        "dnsName": lease.hostname if lease else "",
        "reason": workspace.fault or "",
        "keyName": launch.key_name if launch else None,
        "amiLaunchIndex": launch.launch_index if launch else 0,
        "instanceType": shape.instance_type(workspace, launch),
        "launchTime": workspace.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "placement": {"availabilityZone": shape.zone, "tenancy": "default"},
        "privateIpAddress": lease.ip if lease else None,
        "ipAddress": lease.ip if lease else None,
        "stateReason": {"code": "Server.InternalError", "message": workspace.fault} if workspace.fault else None,
        "architecture": workspace.request.machine.architecture or "x86_64",
        "rootDeviceType": "instance-store",
        "virtualizationType": "hvm",
        "hypervisor": "kvm",
        "clientToken": launch.client_token if launch else None,
        "tagSet": [{"key": key, "value": value} for key, value in tags.items()] or None,
    }
