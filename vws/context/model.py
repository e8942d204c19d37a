"""What a context is made of, and what each member is owed once it is complete: no I/O here.

A member *provides* roles and *requires* roles (the identities of the members providing
them), the identities of every member, and named data. A context is complete when no more
members will join (locked), every member has reported its identities, no more data is
expected, and everything a member requires can be given; it is cancelled as soon as a
member fails or something required can never be given.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Required as data, it asks for a host certificate of the member's own (vws.security.hostcerts).
HOSTCERT = "vws-hostcert"


@dataclass(frozen=True)
class Identity:
    """One interface of a member as its agent reports it (Nimbus ctxdescription IdentityProvides_Type)."""

    interface: str | None = None
    ip: str | None = None
    hostname: str | None = None
    pubkey: str | None = None


@dataclass(frozen=True)
class RequiredRole:
    name: str
    hostname: bool = False  # the member wants the providers' hostnames too
    pubkey: bool = False  # ... and their SSH host keys


@dataclass(frozen=True)
class Contextualization:
    """A member's logistics/contextualization: what it provides and requires."""

    provides: tuple[str, ...] = ()  # role names
    requires_identities: bool = False  # every member's identities (for /etc/hosts)
    requires_roles: tuple[RequiredRole, ...] = ()
    requires_data: tuple[str, ...] = ()  # names of injected data
    data: tuple[tuple[str, str], ...] = ()  # values given with the required data: injected when it joins

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Contextualization":
        fields = json.loads(text)
        return cls(
            provides=tuple(fields["provides"]),
            requires_identities=fields["requires_identities"],
            requires_roles=tuple(RequiredRole(**role) for role in fields["requires_roles"]),
            requires_data=tuple(fields["requires_data"]),
            data=tuple((name, value) for name, value in fields["data"]),
        )


@dataclass(frozen=True)
class Member:
    workspace_id: int
    addresses: tuple[str, ...]  # the leased IPs its agent is recognised by
    spec: Contextualization
    identities: tuple[Identity, ...] | None  # None until its agent reports
    exited: str | None = None  # "ok" or "error"
    error_code: int | None = None
    error_message: str | None = None

    @property
    def reported(self) -> bool:
        return self.identities is not None

    @property
    def known_identities(self) -> tuple[Identity, ...]:
        """What it reported, else what the service leased it."""
        return self.identities if self.identities is not None else tuple(Identity(ip=ip) for ip in self.addresses)

    @property
    def ip(self) -> str | None:
        return next((identity.ip for identity in self.known_identities if identity.ip), None)


@dataclass(frozen=True)
class Context:
    key: str
    owner: str
    locked: bool  # no more members will join
    expect_injections: bool  # more data may be injected
    members: tuple[Member, ...]
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Answer:
    """What ``retrieve`` tells one member: wait, go on with exactly what it requires, or give up."""

    no_more_injections: bool
    complete: bool
    cancelled: bool
    reason: str | None = None  # why it is cancelled
    identities: tuple[Identity, ...] = ()
    roles: tuple[tuple[str, str], ...] = ()  # (role, provider's IP), one per provider
    data: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RoleCount:
    name: str
    filled: int  # providers that have reported
    providers: int  # providers in the context


def problem(context: Context) -> str | None:
    """Why the context can never complete, or None."""
    for member in context.members:
        if member.exited == "error":
            return f"member {member.workspace_id} failed: {member.error_message or 'no reason given'}"
    if not context.locked:
        return None
    provided = {role for member in context.members for role in member.spec.provides}
    for member in context.members:
        for role in member.spec.requires_roles:
            if role.name not in provided:
                return f"member {member.workspace_id} requires role {role.name!r}, which no member provides"
        if not context.expect_injections:
            missing = set(member.spec.requires_data) - {name for name, _ in context.data} - {HOSTCERT}
            if missing:
                return f"member {member.workspace_id} requires data {sorted(missing)} that was never injected"
    return None


def complete(context: Context) -> bool:
    return (
        context.locked
        and not context.expect_injections
        and problem(context) is None
        and all(member.reported for member in context.members)
    )


def answer(context: Context, member: Member) -> Answer:
    reason = problem(context)
    if reason is not None:
        return Answer(not context.expect_injections, False, True, reason)
    if not complete(context):
        return Answer(not context.expect_injections, False, False)
    providers = {
        role.name: [peer for peer in context.members if role.name in peer.spec.provides]
        for role in member.spec.requires_roles
    }
    peers = list(context.members) if member.spec.requires_identities else []
    peers += [peer for group in providers.values() for peer in group if peer not in peers]
    wanted = {role.name: role for role in member.spec.requires_roles}
    return Answer(
        True,
        True,
        False,
        identities=tuple(identity for peer in peers for identity in _shown(peer, member, wanted)),
        roles=tuple((name, peer.ip or "") for name, group in providers.items() for peer in group),
        data=tuple(
            (name, value) for name, value in context.data if name in member.spec.requires_data and name != HOSTCERT
        ),
    )


def _shown(peer: Member, member: Member, wanted: dict[str, RequiredRole]) -> tuple[Identity, ...]:
    """A peer's identities as ``member`` may see them: the SSH key only where some requirement asks for it."""
    if member.spec.requires_identities or any(
        role.pubkey for name, role in wanted.items() if name in peer.spec.provides
    ):
        return peer.known_identities
    return tuple(Identity(i.interface, i.ip, i.hostname, None) for i in peer.known_identities)


def role_counts(context: Context) -> list[RoleCount]:
    """Every role some member requires, with how many providers have reported of how many."""
    names = dict.fromkeys(role.name for member in context.members for role in member.spec.requires_roles)
    return [
        RoleCount(
            name,
            sum(1 for m in context.members if name in m.spec.provides and m.reported),
            sum(1 for m in context.members if name in m.spec.provides),
        )
        for name in names
    ]


def identities_json(identities: Sequence[Identity]) -> str:
    return json.dumps([asdict(identity) for identity in identities], separators=(",", ":"))


def identities_from_json(text: str) -> tuple[Identity, ...]:
    return tuple(Identity(**fields) for fields in json.loads(text))
