"""What every action shares: the facade, the door's records, images, zone and types."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from vws.clock import Clock
from vws.ec2 import ids
from vws.ec2.errors import Ec2Error
from vws.ec2.instances import Shape
from vws.ec2.query import Data, Params
from vws.ec2.records import DoorRecords
from vws.errors import UnknownResource
from vws.workspace.caller import Caller
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace

Handler = Callable[[Caller, Params], Data]


@dataclass(frozen=True)
class Action:
    handler: Handler
    changes_state: bool


@dataclass(frozen=True)
class Door:
    manager: WorkspaceManager
    records: DoorRecords
    images: Callable[[], list[str]]  # the repository's image names
    shape: Shape
    clock: Clock
    lease: timedelta  # an instance runs until terminated, or for this long at most
    network: str  # the pool an instance's NIC is leased from; empty: none
    terminated_visible: timedelta

    def image_name(self, image_id: str) -> str:
        for name in self.images():
            if ids.image_id(name) == image_id:
                return name
        raise Ec2Error("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")

    def visible(self, caller: Caller) -> list[Workspace]:
        """The caller's instances: every live workspace, and those terminated a short while ago."""
        since: datetime = self.clock.now() - self.terminated_visible
        return sorted(
            self.manager.workspaces(caller) + self.manager.ended(caller, since), key=lambda workspace: workspace.id
        )

    def instances(self, caller: Caller, instance_ids: list[str]) -> list[Workspace]:
        """The named instances, all of them, or InvalidInstanceID.NotFound naming those the caller has not."""
        wanted = [ids.workspace_id(instance) for instance in instance_ids]
        found, missing = [], []
        ended = None
        for workspace_id, instance in zip(wanted, instance_ids, strict=True):
            try:
                found.append(self.manager.get(caller, workspace_id))
            except UnknownResource:
                ended = ended if ended is not None else {w.id: w for w in self.visible(caller)}
                if workspace_id in ended:
                    found.append(ended[workspace_id])
                else:
                    missing.append(instance)
        if missing:
            raise Ec2Error("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(missing)}' do not exist")
        return found
