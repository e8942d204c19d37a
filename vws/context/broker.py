"""The context broker: contexts as resources in the store, their members, data and agents.

Two kinds of caller meet here. The context's owner (or an admin), authenticated by the
SOAP gate, creates it, adds members through workspace creation, injects data, reads it
and destroys it; anyone else is told it does not exist. A member's agent, inside its
guest, presents the context's secret from the bootstrap on its config drive and is
recognised among the members by the address the service leased it. Every change is one
transaction, so a restart mid-contextualization loses nothing.
"""

import hmac
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlite_utils import Database

from vws.clock import Clock, parse_timestamp, timestamp
from vws.context import model
from vws.context.model import HOSTCERT, Answer, Context, Contextualization, Identity, Member
from vws.errors import IllegalState, InvalidMetadata, NotAuthorized, RequestDenied, UnknownResource
from vws.store import rows
from vws.store.database import Store
from vws.workspace.caller import Caller
from vws.workspace.records import Workspace
from vws.workspace.states import State


@dataclass(frozen=True)
class Credentials:
    """What a member's agent needs to reach its context: the bootstrap's contents."""

    key: str
    secret: str
    termination_time: datetime


_ENDED = (State.CORRUPTED, State.CANCELLED, State.DESTROYED)


class CertificateIssuer(Protocol):
    """Issues a member's host certificate and revokes it (vws.security.hostcerts, wired in by vws.service)."""

    def issue(self, hostname: str, until: datetime) -> tuple[str, str]: ...  # (serial, PEM of certificate and key)

    def revoke(self, serials: list[str]) -> None: ...


class NotYetMember(UnknownResource):
    """An agent with the context's secret whose address no member has (yet): it may ask again."""


class ContextBroker:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        lifetime: timedelta,
        certificates: CertificateIssuer | None = None,
        agents_shut_out: str | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._lifetime = lifetime  # a new context's, until members' leases extend it
        self._certificates = certificates  # None: no CA, so no host certificates
        self._agents_shut_out = agents_shut_out  # why guests' agents could not reach the service, if so

    # ---- the owner's operations ------------------------------------------------------------

    def create(self, caller: Caller, expect_injections: bool) -> Credentials:
        """A new context, or RequestDenied when its members' agents could never report to it."""
        if self._agents_shut_out:
            raise RequestDenied(self._agents_shut_out)
        now = self._clock.now()
        credentials = Credentials(str(uuid.uuid4()), secrets.token_urlsafe(32), now + self._lifetime)
        with self._store.transaction() as db:
            db["contexts"].insert(
                {
                    "key": credentials.key,
                    "owner": caller.identity,
                    "secret": credentials.secret,
                    "created_at": timestamp(now),
                    "termination_time": timestamp(credentials.termination_time),
                    "expect_injections": int(expect_injections),
                    "locked": 0,
                }
            )
        return credentials

    def credentials(self, caller: Caller, key: str, spec: Contextualization) -> Credentials:
        """The bootstrap for workspaces about to join with ``spec``: refused if the context takes no more
        members, or if they ask for a host certificate and there is no CA to issue one."""
        with self._store.reading() as db:
            row = self._owned(db, caller, key)
        _check_open(row)
        if HOSTCERT in spec.requires_data and self._certificates is None:
            raise RequestDenied(f"this service has no CA to issue host certificates (data {HOSTCERT!r})")
        return Credentials(key, row["secret"], parse_timestamp(row["termination_time"]))

    def join(self, caller: Caller, key: str, members: Sequence[Workspace], spec: Contextualization, lock: bool) -> None:
        """Expect ``members`` (just created with the context's bootstrap); ``lock``: no more will join."""
        for member in members:
            if not member.leases:
                raise InvalidMetadata(f"workspace {member.id} has no NIC: a context member needs an address")
        with self._store.transaction() as db:
            row = self._owned(db, caller, key)
            _check_open(row)
            for member in members:
                rows.insert(
                    db,
                    "context_members",
                    {
                        "workspace_id": member.id,
                        "context_key": key,
                        "addresses": json.dumps([lease.ip for lease in member.leases if lease.ip]),
                        "hostname": member.leases[0].hostname,
                        "lease_ends": timestamp(member.termination_time),
                        "spec": spec.to_json(),
                    },
                )
            for name, value in spec.data:
                db.execute("insert or replace into context_data values (?, ?, ?)", [key, name, value])
            ends = max([parse_timestamp(row["termination_time"]), *(m.termination_time for m in members)])
            db.execute(
                "update contexts set termination_time = ?, locked = ? where key = ?",
                [timestamp(ends), int(lock or row["locked"]), key],
            )

    def inject(self, caller: Caller, key: str, data: Sequence[tuple[str, str]]) -> None:
        with self._store.transaction() as db:
            if not self._owned(db, caller, key)["expect_injections"]:
                raise IllegalState(f"context {key} takes no more data: noMoreInjections was called or not expected")
            for name, value in data:
                db.execute("insert or replace into context_data values (?, ?, ?)", [key, name, value])

    def no_more_injections(self, caller: Caller, key: str) -> None:
        with self._store.transaction() as db:
            self._owned(db, caller, key)
            db.execute("update contexts set expect_injections = 0 where key = ?", [key])

    def context(self, caller: Caller, key: str) -> Context:
        with self._store.reading() as db:
            return _context(db, self._owned(db, caller, key))

    def destroy(self, caller: Caller, key: str) -> None:
        with self._store.transaction() as db:
            self._owned(db, caller, key)
            _delete(db, key)

    # ---- a member, through SOAP (its owner) or its agent (the secret) ---------------------------

    def retrieve(self, caller: Caller, key: str, identities: Sequence[Identity]) -> Answer:
        with self._store.transaction() as db:
            return self._retrieve(db, self._owned(db, caller, key), identities)

    def exiting(
        self, caller: Caller, key: str, identities: Sequence[Identity], error: tuple[int, str] | None = None
    ) -> None:
        with self._store.transaction() as db:
            self._exiting(db, self._owned(db, caller, key), identities, error)

    def agent_retrieve(self, key: str, secret: str, identities: Sequence[Identity]) -> Answer:
        with self._store.transaction() as db:
            return self._retrieve(db, self._admitted(db, key, secret), identities)

    def agent_exiting(
        self, key: str, secret: str, identities: Sequence[Identity], error: tuple[int, str] | None = None
    ) -> None:
        with self._store.transaction() as db:
            self._exiting(db, self._admitted(db, key, secret), identities, error)

    # ---- lifetime and the members' workspaces -----------------------------------------------

    def next_termination(self) -> datetime | None:
        with self._store.reading() as db:
            found = rows.one(db, "select min(termination_time) as due from contexts")
        return parse_timestamp(found["due"]) if found and found["due"] else None  # type: ignore[arg-type]

    def expire_due(self) -> list[str]:
        """Destroy every context past its termination time; returns their keys."""
        now = timestamp(self._clock.now())
        with self._store.transaction() as db:
            due = [row["key"] for row in rows.select(db, "select key from contexts where termination_time <= ?", [now])]
            for key in due:
                _delete(db, str(key))
        return [str(key) for key in due]

    def on_workspace(self, workspace: Workspace) -> None:
        """A manager listener: a context lives as long as its longest member lease, and a member whose
        workspace failed or went away before its agent exited fails the context."""
        if not self._involved(workspace.id):
            return
        with self._store.transaction() as db:
            if workspace.state not in _ENDED:
                ends = timestamp(workspace.termination_time)
                db.execute("update context_members set lease_ends = ? where workspace_id = ?", [ends, workspace.id])
                db.execute(
                    "update contexts set termination_time = ? where termination_time < ?"
                    " and key = (select context_key from context_members where workspace_id = ?)",
                    [ends, ends, workspace.id],
                )
                return
            message = f"its workspace is {workspace.state.wire}" + (f": {workspace.fault}" if workspace.fault else "")
            db.execute(
                "update context_members set exited = 'error', error_code = -1, error_message = ?"
                " where workspace_id = ? and exited is null",
                [message, workspace.id],
            )
            revoked = _revoke(db, workspace.id, self._clock.now()) if workspace.state.gone else []
        if revoked and self._certificates is not None:
            self._certificates.revoke(revoked)

    def _involved(self, workspace_id: int) -> bool:
        """Whether the workspace is a member or holds a host certificate: most never do, and
        asking costs a read where the listener's work costs a write at every state change."""
        with self._store.reading() as db:
            query = (
                "select exists (select 1 from context_members where workspace_id = ?)"
                " or exists (select 1 from host_certificates where workspace_id = ? and revoked_at is null)"
            )
            return bool(db.execute(query, [workspace_id, workspace_id]).fetchone()[0])

    # ---- inside a transaction -------------------------------------------------------------

    def _owned(self, db: Database, caller: Caller, key: str) -> dict:
        row = _live(db, key, self._clock.now())
        if row is None or not (caller.admin or row["owner"] == caller.identity):
            raise UnknownResource(f"no context with key {key}")
        return row

    def _admitted(self, db: Database, key: str, secret: str) -> dict:
        row = _live(db, key, self._clock.now())
        # One answer whether the context is unknown, gone or the secret wrong: nothing to probe.
        if row is None or not hmac.compare_digest(str(row["secret"]).encode(), secret.encode()):
            raise NotAuthorized(f"the secret given is not that of context {key}, or the context is gone")
        return row

    def _retrieve(self, db: Database, row: dict, identities: Sequence[Identity]) -> Answer:
        context = _context(db, row)
        member = _member_at(context, identities)
        if not member.reported:
            db.execute(
                "update context_members set identities = ? where workspace_id = ?",
                [model.identities_json(identities), member.workspace_id],
            )
            context = _context(db, row)
            member = _member_at(context, identities)
        answer = model.answer(context, member)
        if answer.complete and HOSTCERT in member.spec.requires_data:
            answer = replace(answer, data=(*answer.data, (HOSTCERT, self._host_certificate(db, member))))
        return answer

    def _host_certificate(self, db: Database, member: Member) -> str:
        """The member's host certificate and key (PEM), issued at its first complete answer."""
        found = rows.one(db, "select pem from host_certificates where workspace_id = ?", [member.workspace_id])
        if found is not None:
            return str(found["pem"])
        row = rows.one(
            db, "select hostname, lease_ends from context_members where workspace_id = ?", [member.workspace_id]
        )
        assert row is not None and self._certificates is not None  # credentials() refused members without a CA
        serial, pem = self._certificates.issue(str(row["hostname"]), parse_timestamp(str(row["lease_ends"])))
        db.execute(
            "insert into host_certificates (workspace_id, serial, hostname, pem) values (?, ?, ?, ?)",
            [member.workspace_id, serial, row["hostname"], pem],
        )
        return pem

    def _exiting(self, db: Database, row: dict, identities: Sequence[Identity], error: tuple[int, str] | None) -> None:
        member = _member_at(_context(db, row), identities)
        code, message = error if error is not None else (None, None)
        db.execute(
            "update context_members set exited = ?, error_code = ?, error_message = ? where workspace_id = ?",
            ["ok" if error is None else "error", code, message, member.workspace_id],
        )


def _revoke(db: Database, workspace_id: int, now: datetime) -> list[str]:
    """Mark the workspace's host certificate revoked; its serial, for the CRL."""
    found = rows.select(
        db, "select serial from host_certificates where workspace_id = ? and revoked_at is null", [workspace_id]
    )
    db.execute("update host_certificates set revoked_at = ? where workspace_id = ?", [timestamp(now), workspace_id])
    return [str(row["serial"]) for row in found]


def _check_open(row: dict) -> None:
    if row["locked"]:
        raise IllegalState(f"context {row['key']} is locked: it takes no more members")


def _live(db: Database, key: str, now: datetime) -> dict | None:
    return rows.one(db, "select * from contexts where key = ? and termination_time > ?", [key, timestamp(now)])


def _delete(db: Database, key: str) -> None:
    for table in ("context_data", "context_members"):
        db.execute(f"delete from {table} where context_key = ?", [key])
    db.execute("delete from contexts where key = ?", [key])


def _context(db: Database, row: dict) -> Context:
    key = row["key"]
    members = tuple(
        Member(
            int(member["workspace_id"]),  # type: ignore[arg-type]
            tuple(json.loads(str(member["addresses"]))),
            Contextualization.from_json(str(member["spec"])),
            None if member["identities"] is None else model.identities_from_json(str(member["identities"])),
            member["exited"],  # type: ignore[arg-type]
            member["error_code"],  # type: ignore[arg-type]
            member["error_message"],  # type: ignore[arg-type]
        )
        for member in rows.select(
            db, "select * from context_members where context_key = ? order by workspace_id", [key]
        )
    )
    data = tuple(
        (str(item["name"]), str(item["value"]))
        for item in rows.select(db, "select name, value from context_data where context_key = ? order by name", [key])
    )
    return Context(key, row["owner"], bool(row["locked"]), bool(row["expect_injections"]), members, data)


def _member_at(context: Context, identities: Sequence[Identity]) -> Member:
    """The member whose leased addresses include a reported IP."""
    reported = {identity.ip for identity in identities if identity.ip}
    if not reported:
        raise InvalidMetadata("the identities reported carry no IP address: a member is recognised by its address")
    for member in context.members:
        if reported & set(member.addresses):
            return member
    raise NotYetMember(f"no member of context {context.key} has address {', '.join(sorted(reported))}")
