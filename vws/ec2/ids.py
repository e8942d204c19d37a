"""EC2 ids for vws things: stable, so the same workspace or image always has the same one.

An instance id is ``i-`` and the workspace id in hex (at least 8 digits); a reservation
is ``r-`` and the hex id of its first instance (a WSRF group's: of its group key); an
image id is ``ami-`` and 8 hex digits of the SHA-256 of its name in the repository.
"""

import hashlib
import re

from vws.ec2.errors import Ec2Error

_INSTANCE = re.compile(r"i-([0-9a-f]{8,16})")


def instance_id(workspace_id: int) -> str:
    return f"i-{workspace_id:08x}"


def workspace_id(instance: str) -> int:
    found = _INSTANCE.fullmatch(instance)
    if found is None:
        raise Ec2Error("InvalidInstanceID.Malformed", f"{instance!r} is not an instance id (i- and hex digits)")
    return int(found.group(1), 16)


def reservation_id(first_workspace_id: int) -> str:
    return f"r-{first_workspace_id:08x}"


def group_reservation_id(group_key: str) -> str:
    return "r-" + group_key.replace("-", "")[:17]


def image_id(name: str) -> str:
    return "ami-" + hashlib.sha256(name.encode()).hexdigest()[:8]
