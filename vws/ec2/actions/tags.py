"""CreateTags, DescribeTags, DeleteTags on instances (the door's only taggable resources)."""

from collections.abc import Mapping

from vws.ec2 import ids
from vws.ec2.actions.door import Action, Door
from vws.ec2.errors import Ec2Error, invalid_parameter, missing_parameter
from vws.ec2.query import Data, Params
from vws.workspace.caller import Caller

_FILTERS = {
    "resource-id": "resourceId",
    "resource-type": "resourceType",
    "key": "key",
    "value": "value",
}  # filter -> field


def actions(door: Door) -> Mapping[str, Action]:
    return {
        "CreateTags": Action(lambda caller, params: create(door, caller, params), changes_state=True),
        "DescribeTags": Action(lambda caller, params: describe(door, caller, params), changes_state=False),
        "DeleteTags": Action(lambda caller, params: delete(door, caller, params), changes_state=True),
    }


def create(door: Door, caller: Caller, params: Params) -> Data:
    tags = {tag.required("Key"): tag.get("Value", "") or "" for tag in params.members("Tag")}
    if not tags:
        raise missing_parameter("Tag.1.Key")
    door.records.set_tags(_resources(door, caller, params), tags)
    return {"return": True}


def delete(door: Door, caller: Caller, params: Params) -> Data:
    tags = {tag.required("Key"): tag.get("Value") for tag in params.members("Tag")}
    door.records.delete_tags(_resources(door, caller, params), tags)
    return {"return": True}


def describe(door: Door, caller: Caller, params: Params) -> Data:
    workspaces = door.visible(caller)
    found = [
        {"resourceId": ids.instance_id(workspace_id), "resourceType": "instance", "key": key, "value": value}
        for workspace_id, tags in sorted(door.records.tags(workspace.id for workspace in workspaces).items())
        for key, value in tags.items()
    ]
    for spec in params.members("Filter"):
        name, values = spec.required("Name"), set(spec.each("Value"))
        if name not in _FILTERS:
            raise invalid_parameter(f"The filter '{name}' is invalid; known: {', '.join(_FILTERS)}")
        found = [tag for tag in found if tag[_FILTERS[name]] in values]
    return {"tagSet": found}


def _resources(door: Door, caller: Caller, params: Params) -> list[int]:
    named = params.each("ResourceId")
    if not named:
        raise missing_parameter("ResourceId.1")
    others = [resource for resource in named if not resource.startswith("i-")]
    if others:
        raise Ec2Error("InvalidID", f"The ID '{others[0]}' is not valid: only instances can be tagged here")
    return [workspace.id for workspace in door.instances(caller, named)]
