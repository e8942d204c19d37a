"""Ensembles: workspaces from several create requests, co-scheduled all or none.

Each member is placed when it joins, so its addresses are in the create response
and the capacity it needs is held, but it is not propagated or started: it waits,
Unpropagated, until the ensemble is ``done``. Then every member is brought to its
initial state together. If any member cannot be placed when it joins, or any
fails to come up at ``done``, the whole ensemble is destroyed: an ensemble that
cannot be co-scheduled holds nothing. A member refused by policy, quota or its
metadata changes nothing, not even the ensemble it asked to join.
"""

import uuid
from dataclasses import dataclass
from typing import NoReturn

from sqlite_utils import Database

from vws.clock import Clock, timestamp
from vws.errors import IllegalState, InvalidMetadata, RequestDenied, UnknownResource, VwsError
from vws.store.database import Store
from vws.workspace.caller import Caller
from vws.workspace.groups import apply_to_members
from vws.workspace.manager import WorkspaceManager
from vws.workspace.records import Workspace
from vws.workspace.request import DeploymentRequest
from vws.workspace.states import State


@dataclass(frozen=True)
class Joined:
    key: str
    created: list[Workspace]


class Ensembles:
    def __init__(self, store: Store, manager: WorkspaceManager, clock: Clock) -> None:
        self._store = store
        self._manager = manager
        self._clock = clock

    def join(self, caller: Caller, request: DeploymentRequest, key: str | None, done: bool) -> Joined:
        """Add the request's workspaces to ensemble ``key`` (a new one when None).

        A refused member (policy, quota, metadata) changes nothing: a new ensemble is written
        with its first member or not at all, an open one stays as it was. A member that passes
        every check but cannot be placed destroys the ensemble it joins (all or none).
        """
        if key is None:
            key = str(uuid.uuid4())
            created = self._manager.create_held(caller, request, key, prepare=lambda db: self._insert(db, caller, key))
        else:
            created = self._add(caller, request, key)
        if done:
            self.done(caller, key)
            created = [self._manager.get(caller, workspace.id) for workspace in created]
        return Joined(key, created)

    def done(self, caller: Caller, key: str) -> list[Workspace]:
        """No more members: bring every one up together, or destroy the ensemble."""
        self._open(caller, key)
        with self._store.transaction() as db:
            db["ensembles"].update(key, {"done_at": timestamp(self._clock.now())})
        try:
            return self._manager.release_held([member.id for member in self.members(caller, key)])
        except VwsError as exc:
            self._fail(caller, key, exc)

    def members(self, caller: Caller, key: str) -> list[Workspace]:
        self._owned(caller, key)
        return [workspace for workspace in self._manager.workspaces(caller) if workspace.ensemble_key == key]

    def destroy(self, caller: Caller, key: str) -> None:
        members = self.members(caller, key)
        with self._store.transaction() as db:
            db["ensembles"].update(key, {"destroyed_at": timestamp(self._clock.now())})
        apply_to_members(members, lambda w: self._manager.destroy(caller, w.id), "destroy")

    def _insert(self, db: Database, caller: Caller, key: str) -> None:
        db["ensembles"].insert({"key": key, "owner": caller.identity, "created_at": timestamp(self._clock.now())})

    def _add(self, caller: Caller, request: DeploymentRequest, key: str) -> list[Workspace]:
        self._open(caller, key)
        try:
            return self._manager.create_held(caller, request, key)
        except (RequestDenied, InvalidMetadata):
            raise  # refused before anything was reserved or written
        except VwsError as exc:
            self._fail(caller, key, exc)

    def _owned(self, caller: Caller, key: str) -> dict:
        with self._store.reading() as db:
            rows = list(db["ensembles"].rows_where("key = ? and destroyed_at is null", [key]))
        if not rows or not (caller.admin or rows[0]["owner"] == caller.identity):
            raise UnknownResource(f"no ensemble with key {key}")
        return rows[0]

    def _open(self, caller: Caller, key: str) -> None:
        if self._owned(caller, key)["done_at"]:
            raise IllegalState(f"ensemble {key} is done: it takes no more members")

    def _fail(self, caller: Caller, key: str, error: VwsError) -> NoReturn:
        self.destroy(caller, key)
        # The same kind of error, saying what became of the ensemble.
        raise type(error)(
            f"ensemble {key} cannot be co-scheduled and was destroyed with all its members: {error.description}",
            cause=error.cause,
        ) from error


def all_at(members: list[Workspace], wire_state: str) -> bool:
    return bool(members) and all(member.state.wire == wire_state for member in members)


def any_corrupted(members: list[Workspace]) -> bool:
    return any(member.state is State.CORRUPTED for member in members)
