"""RunInstances, TerminateInstances, StopInstances, StartInstances, RebootInstances."""

import base64
import binascii
import threading
from collections.abc import Callable, Mapping

from vws.ec2 import ids, instances
from vws.ec2.actions.door import Action, Door
from vws.ec2.errors import Ec2Error, invalid_parameter
from vws.ec2.query import Data, Params
from vws.ec2.records import Launch
from vws.errors import QuotaExceeded, SchedulingFailed
from vws.workspace.caller import Caller
from vws.workspace.records import Workspace
from vws.workspace.request import ContextFile, DeploymentRequest, DiskRequest, MachineRequest, NicRequest
from vws.workspace.states import Op

AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
_TOKEN_STRIPES = 64


def actions(door: Door) -> Mapping[str, Action]:
    run = Run(door)
    return {
        "RunInstances": Action(run, changes_state=True),
        "TerminateInstances": Action(_changes(door, "terminate", door.manager.destroy), changes_state=True),
        "StopInstances": Action(_changes(door, "stop", door.manager.shutdown), changes_state=True),
        "StartInstances": Action(_changes(door, "start", door.manager.start), changes_state=True),
        "RebootInstances": Action(_reboot(door), changes_state=True),
    }


class Run:
    """RunInstances: MaxCount instances if they fit, else MinCount, else none; a ClientToken makes it idempotent."""

    def __init__(self, door: Door) -> None:
        self._door = door
        # One run per token at a time, so the second finds the first's reservation (boto3 gives every
        # RunInstances a token: striped, so runs with other tokens rarely wait for each other).
        self._token_locks = tuple(threading.Lock() for _ in range(_TOKEN_STRIPES))

    def __call__(self, caller: Caller, params: Params) -> Data:
        token = params.get("ClientToken") or None
        if token is None:
            return self._reservation(caller, self._launch(caller, params, None))
        with self._token_locks[hash((caller.identity, token)) % _TOKEN_STRIPES]:
            earlier = self._door.records.reservation_of_token(caller.identity, token)
            if earlier is not None:
                made = [self._door.manager.get(caller, workspace_id) for workspace_id in earlier]
                return self._reservation(caller, made)
            return self._reservation(caller, self._launch(caller, params, token))

    def _launch(self, caller: Caller, params: Params, token: str | None) -> list[Workspace]:
        door = self._door
        image_id = params.required("ImageId")
        image = door.image_name(image_id)
        instance_type = params.get("InstanceType") or next(iter(door.shape.types))
        if instance_type not in door.shape.types:
            raise invalid_parameter(f"Invalid value '{instance_type}' for InstanceType.")
        least, most = params.integer("MinCount", 1), params.integer("MaxCount", 1)
        if not 1 <= least <= most:
            raise invalid_parameter("MinCount must be at least 1 and at most MaxCount")
        vcpus, memory = door.shape.types[instance_type]
        key_name = params.get("KeyName") or None
        machine = MachineRequest(
            memory_mb=memory,
            vcpus=vcpus,
            root=DiskRequest(f"file://{image}", "sda1"),
            nics=(NicRequest("eth0", door.network),) if door.network else (),
            files=self._key_files(caller, key_name),
            userdata=_user_data(params.get("UserData")),
        )
        request = DeploymentRequest(name=f"ec2:{image}", machine=machine, duration=door.lease)
        made = self._create(caller, request, least, most)
        reservation = ids.reservation_id(made[0].id)
        launches = [
            Launch(workspace.id, reservation, image_id, instance_type, key_name, token, index)
            for index, workspace in enumerate(made)
        ]
        door.records.record_launches(caller.identity, launches)
        tags = {
            tag.required("Key"): tag.get("Value", "") or ""
            for spec in params.members("TagSpecification")
            if spec.get("ResourceType") == "instance"
            for tag in spec.members("Tag")
        }
        if tags:
            door.records.set_tags([workspace.id for workspace in made], tags)
        return made

    def _create(self, caller: Caller, request: DeploymentRequest, least: int, most: int) -> list[Workspace]:
        for count in dict.fromkeys((most, least)):  # MaxCount, then MinCount (once, when they are equal)
            try:
                return self._door.manager.create(caller, _sized(request, count))
            except (SchedulingFailed, QuotaExceeded):
                if count == least:
                    raise
        raise AssertionError("unreachable: the last count re-raises")

    def _key_files(self, caller: Caller, key_name: str | None) -> tuple[ContextFile, ...]:
        if key_name is None:
            return ()
        for pair in self._door.records.key_pairs(caller.identity):
            if pair.name == key_name:
                return (ContextFile(AUTHORIZED_KEYS, pair.public_key + "\n"),)
        raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{key_name}' does not exist")

    def _reservation(self, caller: Caller, made: list[Workspace]) -> Data:
        door = self._door
        launches = door.records.launches(workspace.id for workspace in made)
        tags = door.records.tags(workspace.id for workspace in made)
        return {
            "reservationId": instances.reservation(made[0], launches.get(made[0].id)),
            "ownerId": caller.identity,
            "groupSet": [],
            "instancesSet": [
                instances.item(workspace, launches.get(workspace.id), tags.get(workspace.id, {}), door.shape)
                for workspace in made
            ],
        }


def _sized(request: DeploymentRequest, count: int) -> DeploymentRequest:
    return DeploymentRequest(request.name, request.machine, request.duration, node_number=count)


def _user_data(encoded: str | None) -> str | None:
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_parameter("UserData must be base64 of UTF-8 text") from None


def _changes(door: Door, verb: str, operation: Callable[[Caller, int], Workspace]) -> Callable[[Caller, Params], Data]:
    """Terminate, stop or start: each instance's state before and after."""

    def handle(caller: Caller, params: Params) -> Data:
        named = params.each("InstanceId")
        if not named:
            raise Ec2Error("MissingParameter", f"name at least one instance to {verb} (InstanceId.N)")
        changes = []
        for workspace in door.instances(caller, named):
            if workspace.state.gone and verb != "terminate":
                raise Ec2Error("IncorrectInstanceState", f"instance {ids.instance_id(workspace.id)} is terminated")
            after = workspace if workspace.state.gone else operation(caller, workspace.id)
            changes.append(
                {
                    "instanceId": ids.instance_id(workspace.id),
                    "currentState": instances.state(after),
                    "previousState": instances.state(workspace),
                }
            )
        return {"instancesSet": changes}

    return handle


def _reboot(door: Door) -> Callable[[Caller, Params], Data]:
    def handle(caller: Caller, params: Params) -> Data:
        for workspace in door.instances(caller, params.each("InstanceId")):
            door.manager.shutdown(caller, workspace.id, Op.REBOOT)
        return {"return": True}

    return handle
