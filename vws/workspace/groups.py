"""Groups: the N workspaces one request with NodeNumber > 1 created, managed as one.

An operation on a group is applied to every remaining member, in id order. As in
GT4 there is no rollback: members that fail are named in one GroupPartlyFailed
error while the others keep their new state.
"""

from collections.abc import Callable

from vws.errors import UnknownResource, VwsError
from vws.workspace.caller import Caller
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace
from vws.workspace.states import Op


class GroupPartlyFailed(VwsError):
    """Some members of a group (or ensemble) refused or failed the operation."""


def apply_to_members(members: list[Workspace], operation: Callable[[Workspace], object], what: str) -> None:
    """Run ``operation`` on each member; report every failure together afterwards."""
    failures = []
    for member in members:
        try:
            operation(member)
        except VwsError as exc:
            failures.append(f"workspace {member.id}: {exc.description}")
    if failures:
        raise GroupPartlyFailed(
            f"{what} failed for {len(failures)} of {len(members)} members", cause="; ".join(failures)
        )


class Groups:
    def __init__(self, manager: WorkspaceManager) -> None:
        self._manager = manager

    def members(self, caller: Caller, key: str) -> list[Workspace]:
        """The group's remaining members; unknown unless the caller owns some."""
        members = [workspace for workspace in self._manager.workspaces(caller) if workspace.group_key == key]
        if not members:
            raise UnknownResource(f"no group with key {key}")
        return members

    def start(self, caller: Caller, key: str) -> None:
        apply_to_members(self.members(caller, key), lambda w: self._manager.start(caller, w.id), "start")

    def shutdown(self, caller: Caller, key: str, op: Op, save_target: str | None = None) -> None:
        """``save_target`` is a base name: each member's disk is saved at it plus ``-<id>``, as in GT4."""
        apply_to_members(
            self.members(caller, key),
            lambda w: self._manager.shutdown(caller, w.id, op, save_target and f"{save_target}-{w.id}"),
            op.value,
        )

    def destroy(self, caller: Caller, key: str) -> None:
        apply_to_members(self.members(caller, key), lambda w: self._manager.destroy(caller, w.id), "destroy")
