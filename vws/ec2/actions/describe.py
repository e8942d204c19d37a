"""DescribeInstances: the caller's instances by reservation, filtered and paginated.

Filters: instance-id, instance-state-name, image-id, instance-type, reservation-id,
tag:<key>, tag-key. A page holds MaxResults instances (5 to 1000); NextToken is the
instance id the next page starts after.
"""

from collections.abc import Callable, Mapping

from vws.ec2 import ids, instances
from vws.ec2.actions.door import Action, Door
from vws.ec2.errors import invalid_parameter
from vws.ec2.query import Data, Params
from vws.ec2.records import Launch
from vws.workspace.caller import Caller
from vws.workspace.records import Workspace

MAX_RESULTS = 1000

Known = tuple[Workspace, Launch | None, dict[str, str]]
_FIELDS: dict[str, Callable[[Known, Door], list[str]]] = {
    "instance-id": lambda known, door: [ids.instance_id(known[0].id)],
    "instance-state-name": lambda known, door: [instances.state_name(known[0])],
    "image-id": lambda known, door: [known[1].image_id if known[1] else instances.image_of(known[0]) or ""],
    "instance-type": lambda known, door: [door.shape.instance_type(known[0], known[1])],
    "reservation-id": lambda known, door: [instances.reservation(known[0], known[1])],
    "tag-key": lambda known, door: list(known[2]),
}


def actions(door: Door) -> Mapping[str, Action]:
    return {"DescribeInstances": Action(lambda caller, params: describe(door, caller, params), changes_state=False)}


def describe(door: Door, caller: Caller, params: Params) -> Data:
    named = params.each("InstanceId")
    workspaces = door.instances(caller, named) if named else door.visible(caller)
    launches = door.records.launches(workspace.id for workspace in workspaces)
    tags = door.records.tags(workspace.id for workspace in workspaces)
    known = [(workspace, launches.get(workspace.id), tags.get(workspace.id, {})) for workspace in workspaces]
    for spec in params.members("Filter"):
        known = _filtered(known, spec.required("Name"), set(spec.each("Value")), door)
    page, next_token = _page(known, params)
    reservations: dict[tuple[str, str], list[Data]] = {}  # (reservation, owner): an admin sees everyone's
    for workspace, launch, own_tags in page:
        item = instances.item(workspace, launch, own_tags, door.shape)
        reservations.setdefault((instances.reservation(workspace, launch), workspace.owner), []).append(item)
    return {
        "reservationSet": [
            {"reservationId": reservation, "ownerId": owner, "groupSet": [], "instancesSet": items}
            for (reservation, owner), items in reservations.items()
        ],
        "nextToken": next_token,
    }


def _filtered(known: list[Known], name: str, values: set[str], door: Door) -> list[Known]:
    if name.startswith("tag:"):
        key = name[4:]
        return [entry for entry in known if entry[2].get(key) in values]
    field = _FIELDS.get(name)
    if field is None:
        raise invalid_parameter(f"The filter '{name}' is invalid; known: {', '.join([*_FIELDS, 'tag:<key>'])}")
    return [entry for entry in known if values.intersection(field(entry, door))]


def _page(known: list[Known], params: Params) -> tuple[list[Known], str | None]:
    size = params.integer("MaxResults", MAX_RESULTS)
    if not 5 <= size <= MAX_RESULTS:
        raise invalid_parameter(f"MaxResults must be between 5 and {MAX_RESULTS}")
    after = params.get("NextToken")
    if after:
        start = ids.workspace_id(after)
        known = [entry for entry in known if entry[0].id > start]
    page = known[:size]
    return page, ids.instance_id(page[-1][0].id) if len(known) > size else None
