"""Per-user quotas, as GT4's group-authz plugin had them.

Four limits (0 means none): simultaneous workspaces, workspaces in one request,
minutes held by live workspaces, and minutes used by ended ones plus held by live
ones. The ``[quotas]`` section gives everyone's; a rules file overrides them per DN
or per grid-mapfile account, one subject a line, grid-mapfile style::

    "/O=Grid/OU=Example/CN=Alice Smith"   max_workspaces=2 max_reserved_minutes=600
    @physics                              max_group_size=16

A DN's own line wins over its account's, which wins over the section. The check
runs inside the reservation transaction, so a request over quota reserves nothing
and two concurrent requests cannot both squeeze under a limit.
"""

import dataclasses
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlite_utils import Database

from vws.config import ConfigError, QuotaConfig
from vws.errors import QuotaExceeded
from vws.workspace.accounting import charge_minutes, usage
from vws.workspace.caller import Caller
from vws.workspace.request import DeploymentRequest

Accounts = Callable[[str], Sequence[str]]  # DN -> the grid-mapfile accounts it maps to


@dataclass(frozen=True)
class Limits:
    max_workspaces: int = 0
    max_group_size: int = 0
    max_reserved_minutes: int = 0
    max_elapsed_reserved_minutes: int = 0


def read_rules(path: Path) -> dict[str, dict[str, int]]:
    """Subject ("DN" or @account) -> the limits its line sets; a ConfigError names the line at fault."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read quota rules: {getattr(exc, 'strerror', None) or exc}") from None
    rules = {}
    names = {field.name for field in dataclasses.fields(Limits)}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:  # an unclosed quote
            raise ConfigError(f"{path}:{number}: {str(exc).lower()}") from None
        if not words:
            continue
        subject, settings = words[0], dict(word.partition("=")[::2] for word in words[1:])
        unknown = set(settings) - names
        if unknown or not all(value.isascii() and value.isdigit() for value in settings.values()):
            raise ConfigError(f"{path}:{number}: expected name=minutes with names from {', '.join(sorted(names))}")
        rules[subject] = {name: int(value) for name, value in settings.items()}
    return rules


class Quotas:
    def __init__(self, config: QuotaConfig, granularity: int, accounts: Accounts = lambda dn: ()) -> None:
        self._defaults = Limits(
            config.max_workspaces,
            config.max_group_size,
            config.max_reserved_minutes,
            config.max_elapsed_reserved_minutes,
        )
        self._rules = read_rules(config.rules_file) if config.rules_file else {}
        self._granularity = granularity
        self._accounts = accounts

    def limits_for(self, identity: str) -> Limits:
        limits = self._defaults
        for account in self._accounts(identity):
            limits = dataclasses.replace(limits, **self._rules.get("@" + account, {}))
        return dataclasses.replace(limits, **self._rules.get(identity, {}))

    def check(self, db: Database, caller: Caller, request: DeploymentRequest, duration: timedelta) -> None:
        """WorkspaceManager admission check: refuse, naming the limit, what would exceed one."""
        if caller.admin:
            return
        limits = self.limits_for(caller.identity)
        if limits == Limits():
            return  # no limit applies: skip reading the caller's history
        count = request.node_number
        standing = usage(db, caller.identity, self._granularity)
        minutes = count * charge_minutes(duration, self._granularity)
        for name, limit, wanted in (
            ("max_group_size", limits.max_group_size, count),
            ("max_workspaces", limits.max_workspaces, standing.live + count),
            ("max_reserved_minutes", limits.max_reserved_minutes, standing.reserved_minutes + minutes),
            (
                "max_elapsed_reserved_minutes",
                limits.max_elapsed_reserved_minutes,
                standing.used_minutes + standing.reserved_minutes + minutes,
            ),
        ):
            if limit and wanted > limit:
                raise QuotaExceeded(f"over quota: {name} is {limit} for {caller.identity}; this request needs {wanted}")
