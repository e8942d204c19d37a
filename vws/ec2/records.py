"""The EC2 door's own tables: what RunInstances was asked, client tokens, key pairs, tags.

Keyed by workspace id, never joined to the workspace layer's table: the door reads
workspaces through the facade and its own rows by the ids the facade gave it.
"""

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass

from vws.clock import Clock, timestamp
from vws.store import rows
from vws.store.database import Store


@dataclass(frozen=True)
class Launch:
    """What RunInstances said about one instance it made."""

    workspace_id: int
    reservation_id: str
    image_id: str
    instance_type: str
    key_name: str | None
    client_token: str | None
    launch_index: int


@dataclass(frozen=True)
class KeyPair:
    name: str
    key_pair_id: str
    fingerprint: str
    public_key: str


class DoorRecords:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    # ---- launches and client tokens ------------------------------------------------------

    def record_launches(self, owner: str, launches: list[Launch]) -> None:
        """The launches of one reservation, and its client token if it had one, in one transaction."""
        with self._store.transaction() as db:
            db.table("ec2_instances").insert_all(dataclasses.asdict(launch) for launch in launches)
            token = launches[0].client_token
            if token:
                row = {"owner": owner, "token": token, "reservation_id": launches[0].reservation_id}
                db.table("ec2_client_tokens").insert({**row, "created_at": timestamp(self._clock.now())})

    def launches(self, workspace_ids: Iterable[int]) -> dict[int, Launch]:
        with self._store.reading() as db:
            found = rows.select(
                db,
                "select * from ec2_instances where workspace_id in (select value from json_each(?))",
                [json.dumps(list(workspace_ids))],
            )
        return {row["workspace_id"]: Launch(**row) for row in found}  # type: ignore[arg-type]

    def reservation_of_token(self, owner: str, token: str) -> list[int] | None:
        """The workspace ids the caller's earlier RunInstances with this ClientToken made."""
        with self._store.reading() as db:
            row = rows.one(db, "select * from ec2_client_tokens where owner = ? and token = ?", [owner, token])
            if row is None:
                return None
            found = rows.select(
                db,
                "select workspace_id from ec2_instances where reservation_id = ? order by launch_index",
                [row["reservation_id"]],
            )
        return [int(item["workspace_id"]) for item in found]  # type: ignore[call-overload]

    # ---- key pairs ------------------------------------------------------------------------

    def add_key_pair(self, owner: str, pair: KeyPair) -> bool:
        """False when the owner already has a key pair of that name."""
        with self._store.transaction() as db:
            cursor = db.execute(
                "insert or ignore into ec2_key_pairs (owner, name, key_pair_id, fingerprint, public_key, created_at)"
                " values (?, ?, ?, ?, ?, ?)",
                [owner, pair.name, pair.key_pair_id, pair.fingerprint, pair.public_key, timestamp(self._clock.now())],
            )
            return cursor.rowcount == 1

    def key_pairs(self, owner: str) -> list[KeyPair]:
        with self._store.reading() as db:
            found = rows.select(db, "select * from ec2_key_pairs where owner = ? order by name", [owner])
        return [KeyPair(r["name"], r["key_pair_id"], r["fingerprint"], r["public_key"]) for r in found]  # type: ignore[arg-type]

    def delete_key_pair(self, owner: str, name: str) -> None:
        with self._store.transaction() as db:
            db.execute("delete from ec2_key_pairs where owner = ? and name = ?", [owner, name])

    # ---- tags -----------------------------------------------------------------------------

    def tags(self, workspace_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        with self._store.reading() as db:
            found = rows.select(
                db,
                "select * from ec2_tags where workspace_id in (select value from json_each(?)) order by key",
                [json.dumps(list(workspace_ids))],
            )
        tags: dict[int, dict[str, str]] = {}
        for row in found:
            tags.setdefault(row["workspace_id"], {})[row["key"]] = row["value"]  # type: ignore[index]
        return tags

    def set_tags(self, workspace_ids: Iterable[int], tags: dict[str, str]) -> None:
        with self._store.transaction() as db:
            db.table("ec2_tags").upsert_all(
                (
                    {"workspace_id": wid, "key": key, "value": value}
                    for wid in workspace_ids
                    for key, value in tags.items()
                ),
                pk=("workspace_id", "key"),
            )

    def delete_tags(self, workspace_ids: Iterable[int], tags: dict[str, str | None]) -> None:
        """Each key's tag; with a value, only where the tag has that value."""
        with self._store.transaction() as db:
            for workspace_id in workspace_ids:
                for key, value in tags.items():
                    db.execute(
                        "delete from ec2_tags where workspace_id = ? and key = ? and (? is null or value = ?)",
                        [workspace_id, key, value, value],
                    )
