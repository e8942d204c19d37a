"""The EC2 actions the door answers, each a function of (caller, form) to the answer's data.

``Door`` is what they share: the workspace-layer facade, the door's own records, the
images of the repository, the zone and the instance-type table. ``table`` names every
action with its handler and whether it changes anything (only those are held to the
replay rule); an action not in it is EC2's UnsupportedOperation.
"""

from collections.abc import Mapping

from vws.ec2.actions import catalogue, describe, keypairs, lifecycle, tags
from vws.ec2.actions.door import Action, Door

__all__ = ["Action", "Door", "table"]


def table(door: Door) -> Mapping[str, Action]:
    return {
        **lifecycle.actions(door),
        **describe.actions(door),
        **keypairs.actions(door),
        **tags.actions(door),
        **catalogue.actions(door),
    }
